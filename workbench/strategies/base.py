"""The Strategy interface, used unchanged by vectorised backtests, sweeps and (later) the live engine.

A strategy turns market data into a **target position** per bar: a number in [-1, 1] for each asset, the
fraction of the capital allotted to that asset, signed by direction (+1 all-in long, -1 all-in short, 0 flat;
NaN means "no decision yet" and is treated as flat). The value at bar t is decided with data up to and
including the close of bar t, and **executes no earlier than the open of bar t+1**: the backtest engine does
that shift, never the strategy. ``workbench check lookahead`` verifies that no past decision changes when
the future is cut off.

Parameters are a typed pydantic model per strategy (defaults, bounds, did-you-mean on unknown names), and each
parameter declares its Optuna search range, so sweeps and optimisation need no extra code per strategy.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.strategies.indicators import Indicator, SweepKernel

__all__ = [
    "Param",
    "ParamError",
    "Params",
    "Strategy",
    "get_strategy",
    "register",
    "strategy_names",
]


class ParamError(ValueError):
    """Bad strategy parameters; the message names the strategy and the parameter."""


class Params(BaseModel):
    """Base of every strategy's parameter model: frozen, unknown names rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def check(self) -> None:
        """Cross-parameter rules (e.g. fast < slow); raise ValueError with a clear message."""


def Param(
    default: Any, *, low: float, high: float, step: float | None = None, log: bool = False, doc: str = ""
) -> Any:
    """A strategy parameter with bounds and its Optuna search range (``low``..``high``, optional ``step``)."""
    ge, le = low, high
    return Field(
        default,
        ge=ge,
        le=le,
        description=doc,
        json_schema_extra={"search": {"low": low, "high": high, "step": step, "log": log}},
    )


class Strategy(ABC):
    """Base class. Subclasses set ``name``, ``Params`` and implement :meth:`target`.

    ``assets``: how many aligned assets :meth:`target` takes: 1 (a Candles frame) or 2 (pairs; a dict of two).

    Subclasses also declare their indicators (:meth:`indicators`) and their warm-up (:meth:`warmup`, the
    closed candles the live engine keeps), and optionally ``sweep_kernel``, the fused numba kernel that
    reproduces :meth:`target` from the indicator rows (see :mod:`workbench.strategies.indicators`).
    """

    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    assets: ClassVar[int] = 1
    description: ClassVar[str] = ""
    sweep_kernel: ClassVar[SweepKernel | None] = None

    def __init__(self, **params: Any) -> None:
        self.params = self.make_params(params)

    @classmethod
    def make_params(cls, params: Mapping[str, Any]) -> Params:
        valid = list(cls.Params.model_fields)
        for k in params:
            if k not in valid:
                hint = difflib.get_close_matches(k, valid, n=1, cutoff=0.5)
                raise ParamError(
                    f"strategy {cls.name!r}: unknown parameter {k!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f"; parameters: {', '.join(valid)}"
                )
        try:
            p = cls.Params(**params)
            p.check()
        except ValidationError as e:
            msgs = "; ".join(
                f"{'.'.join(map(str, x['loc']))}: {x['msg']} (got {x.get('input')!r})" for x in e.errors()
            )
            raise ParamError(f"strategy {cls.name!r}: {msgs}") from None
        except ValueError as e:
            raise ParamError(f"strategy {cls.name!r}: {e}") from None
        return p

    @abstractmethod
    def target(
        self, data: pd.DataFrame | Mapping[str, pd.DataFrame], features: pd.DataFrame | None = None
    ) -> pd.Series | pd.DataFrame:
        """Target position per bar, decided at the bar's close (Series for one asset, DataFrame for several)."""

    def indicators(self) -> dict[str, Indicator]:
        """The strategy's indicators with this instance's parameters, by name (none by default).

        :meth:`target` should compute its indicators by calling these declarations, so that sweeps and
        charts use the same values."""
        return {}

    def warmup(self) -> int:
        """Closed candles that :meth:`target` needs so that its value at the last bar equals the one computed
        on the full history (the live engine keeps this many). Default: the longest declared indicator's
        ``bars``, which is right for a strategy whose decision depends on the last bar's indicators only;
        a strategy that holds a state (hysteresis) must add its memory (see ``STATE_MEMORY``). A strategy
        that declares no indicators must override this: no warm-up is guessed."""
        ind = self.indicators()
        if not ind:
            raise NotImplementedError(
                f"strategy {self.name!r} declares no indicators and no warmup(): override warmup() with "
                "the number of closed candles its target needs"
            )
        return max(i.bars for i in ind.values())

    def indicator_frame(self, data: pd.DataFrame | Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """Every declared indicator's values on ``data`` (columns ``name`` or ``name.output``), for charts."""
        frames = [spec.frame(data, name) for name, spec in self.indicators().items()]
        return pd.concat(frames, axis=1) if frames else pd.DataFrame(index=getattr(data, "index", None))

    @classmethod
    def search_space(cls) -> dict[str, dict[str, Any]]:
        """``{param: {low, high, step, log, type}}`` for Optuna and grid sweeps."""
        out = {}
        for name, f in cls.Params.model_fields.items():
            extra = f.json_schema_extra or {}
            if isinstance(extra, dict) and "search" in extra:
                out[name] = {**extra["search"], "type": "int" if f.annotation is int else "float"}
        return out

    @classmethod
    def suggest(cls, trial: Any) -> dict[str, Any]:
        """Draw parameters from an Optuna trial within the search space (invalid combinations are pruned)."""
        params: dict[str, Any] = {}
        for name, s in cls.search_space().items():
            if s["type"] == "int":
                params[name] = trial.suggest_int(
                    name, int(s["low"]), int(s["high"]), step=int(s["step"] or 1), log=s["log"]
                )
            else:
                params[name] = trial.suggest_float(name, s["low"], s["high"], step=s["step"], log=s["log"])
        return params

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"


_REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy findable by name (``--strategy NAME``) in this process. Strategies in
    files need no decorator: see :mod:`workbench.strategies.loader`."""
    old = _REGISTRY.get(cls.name)
    if old is not None and old is not cls and _origin(old) != _origin(cls):
        raise ValueError(f"strategy name {cls.name!r} registered twice: {_origin(old)} and {_origin(cls)}")
    _REGISTRY[cls.name] = cls  # the same class again (a re-imported module) replaces the old one
    return cls


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _load_builtins() -> None:
    from workbench.strategies import mean_reversion, ml, momentum  # noqa: F401  (registers)


def _registered() -> dict[str, type[Strategy]]:
    """The built-ins and the strategies registered in this process, except those of strategy files (the
    loader finds those in their folders)."""
    from workbench.strategies.loader import PACKAGE

    _load_builtins()
    return {k: v for k, v in _REGISTRY.items() if not v.__module__.startswith(PACKAGE + ".")}


def strategy_names() -> list[str]:
    """The built-in and registered strategies (see :func:`workbench.strategies.loader.discover` for files)."""
    return sorted(_registered())


def get_strategy(name: str, paths: Sequence[str | Path] = ()) -> type[Strategy]:
    """A strategy class by built-in or registered name, by file (``path.py:ClassName`` or ``path.py``), or by
    name from the strategy folders ``paths`` (see :mod:`workbench.strategies.loader`)."""
    from workbench.strategies.loader import load_strategy

    return load_strategy(name, paths)
