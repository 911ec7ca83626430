"""Parameter sweeps: every combination of a grid, evaluated by fused numba kernels for the strategies that
declare one (``Strategy.sweep_kernel``: the kernel reads the strategy's declared indicators, each computed
once per distinct parameter value; memory independent of the number of combinations), by a generic state
kernel for other single-asset strategies, and by ``run_backtest`` per combination for several assets. Every path simulates
with the same bar step (:mod:`workbench.sim.portfolio`), stops and notional sizing included. The best combination's Sharpe is deflated for the number of combinations tried."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.backtest import kernels as K
from workbench.backtest.engine import BacktestConfig, _utc, align, run_backtest
from workbench.backtest.metrics import deflated_sharpe, periods_per_year
from workbench.strategies.base import ParamError, Strategy, get_strategy

__all__ = ["SweepResult", "expand_grid", "parse_grid", "sweep"]

_DIRECTION = {"long": K.LONG, "short": K.SHORT, "both": K.BOTH}


def parse_grid(specs: Sequence[str], strategy: type[Strategy] | None = None) -> dict[str, list[Any]]:
    """``["fast=5:50:5", "slow=20,50,100", "exit=0"]`` -> ``{"fast": [5, 10, ..., 50], ...}``.

    ``a:b:s`` is a range from a to b **inclusive** in steps of s; ``a,b,c`` a list; a single value a constant.
    Integers stay integers. With ``strategy``, names are checked (did-you-mean) and values typed.
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        if "=" not in spec:
            raise ParamError(f"grid {spec!r}: expected name=start:stop:step, name=a,b,c or name=value")
        name, _, values = (x.strip() for x in spec.partition("="))
        if strategy is not None:
            strategy.make_params({})  # defaults are valid
            if name not in strategy.Params.model_fields:
                strategy.make_params({name: None})  # raises the did-you-mean error
        grid[name] = _parse_values(name, values)
        if strategy is not None and strategy.Params.model_fields[name].annotation is int:
            grid[name] = [int(v) for v in grid[name]]
    return grid


def _num(name: str, s: str) -> float | int:
    try:
        f = float(s)
    except ValueError:
        raise ParamError(f"grid {name}: {s!r} is not a number") from None
    return int(f) if f.is_integer() and "." not in s and "e" not in s.lower() else f


def _parse_values(name: str, values: str) -> list[Any]:
    if ":" in values:
        parts = values.split(":")
        if len(parts) != 3:
            raise ParamError(f"grid {name}={values}: expected start:stop:step")
        a, b, s = (_num(name, p) for p in parts)
        if s <= 0 or b < a:
            raise ParamError(f"grid {name}={values}: need start <= stop and step > 0")
        n = math.floor((b - a) / s + 1e-9) + 1
        out = [a + i * s for i in range(n)]
        return [int(v) if isinstance(a, int) and isinstance(s, int) else round(float(v), 12) for v in out]
    return [_num(name, v) for v in values.split(",") if v.strip()]


def expand_grid(
    strategy: type[Strategy], grid: Mapping[str, Sequence[Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Every valid combination (invalid ones, e.g. fast >= slow, are skipped) and the total count."""
    _, combos, total = _expand(strategy, grid)
    return combos, total


def _expand(
    strategy: type[Strategy], grid: Mapping[str, Sequence[Any]]
) -> tuple[list[Any], list[dict[str, Any]], int]:
    """:func:`expand_grid` plus each valid combination's validated parameters (validated once, here)."""
    names = list(grid)
    checked, combos, total = [], [], 0
    for values in itertools.product(*(grid[n] for n in names)):
        total += 1
        params = dict(zip(names, values, strict=True))
        try:
            checked.append(strategy.make_params(params))
        except ParamError:
            continue
        combos.append(params)
    return checked, combos, total


def _instances(cls: type[Strategy], checked: Sequence[Any]) -> list[Strategy]:
    """Strategies with already validated parameters; without validating them again where the class keeps
    :class:`Strategy`'s constructor (any other constructor is called as usual)."""
    if cls.__init__ is not Strategy.__init__:
        return [cls(**p.model_dump()) for p in checked]
    out = []
    for p in checked:
        s = cls.__new__(cls)
        s.params = p
        out.append(s)
    return out


@dataclass
class SweepResult:
    strategy: str
    table: pd.DataFrame  # one row per combination: parameters then kernels.METRICS, sorted by `metric`
    metric: str
    n_combinations: int
    n_valid: int
    seconds: float
    engine: str
    best: dict[str, Any] = field(default_factory=dict)
    start: pd.Timestamp | None = None  # the simulated bars: the first (after ``start``) and the last
    end: pd.Timestamp | None = None

    def top(self, n: int = 20) -> pd.DataFrame:
        return self.table.head(n)

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        t = self.table if top is None else self.table.head(top)
        return {
            "strategy": self.strategy,
            "metric": self.metric,
            "n_combinations": self.n_combinations,
            "n_valid": self.n_valid,
            "seconds": self.seconds,
            "combinations_per_second": self.n_valid / self.seconds if self.seconds > 0 else None,
            "engine": self.engine,
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "best": self.best,
            "results": t.replace({np.nan: None}).to_dict(orient="records"),
        }


def sweep(
    data: pd.DataFrame | Mapping[str, pd.DataFrame],
    strategy: str | type[Strategy],
    grid: Mapping[str, Sequence[Any]],
    config: BacktestConfig | None = None,
    *,
    metric: str = "sharpe",
    start: object = None,
) -> SweepResult:
    """Evaluate every valid combination of ``grid`` (missing parameters take their defaults).

    As in :func:`~workbench.backtest.engine.run_backtest`, the strategy sees all the data given (its indicators
    warm up on the bars before ``start``) and the simulation runs from ``start``; cut the data at the end
    before calling, as the CLI does.
    """
    cls = get_strategy(strategy) if isinstance(strategy, str) else strategy
    config = config or BacktestConfig()
    checked, combos, total = _expand(cls, grid)
    if not combos:
        raise ParamError(f"strategy {cls.name!r}: no valid combination in the grid ({total} tried)")
    if metric not in K.METRICS:
        raise ParamError(f"unknown metric {metric!r}; metrics: {', '.join(K.METRICS)}")
    t0 = time.perf_counter()
    if _kernel_ok(data, cls, config):
        res, engine = _kernel_sweep(data, cls, combos, config, start, checked=checked)
    else:
        res, engine = _engine_sweep(data, cls, combos, config, start), "simulator"
    seconds = time.perf_counter() - t0
    params = pd.DataFrame([p.model_dump() for p in checked])
    table = pd.concat([params, pd.DataFrame(res, columns=list(K.METRICS))], axis=1)
    table["n_trades"] = table["n_trades"].astype(int)
    # higher is better for every metric here (max_drawdown is negative: closer to 0 ranks first)
    table = table.sort_values(metric, ascending=False, na_position="last", kind="stable").reset_index(
        drop=True
    )
    out = SweepResult(cls.name, table, metric, total, len(combos), seconds, engine)
    out.best = _best_with_dsr(table, data, cls, config, start)
    index = data.index if isinstance(data, pd.DataFrame) else next(iter(align(data).values())).index
    if len(index):
        out.start, out.end = index[_first_bar(index, start, None)], index[-1]
    return out


def _kernel_ok(data: Any, cls: type[Strategy], config: BacktestConfig) -> bool:
    """Kernels cover single-asset strategies on one asset; ``run_backtest`` per combination covers the rest."""
    return isinstance(data, pd.DataFrame) and cls.assets == 1


def _first_bar(index: pd.DatetimeIndex, start: object, end: object) -> int:
    """The first simulated bar for ``start`` (bars before it warm the indicators up), checked like
    ``run_backtest`` checks it."""
    t0 = 0 if start is None else int(index.searchsorted(_utc(start)))
    stop = len(index) if end is None else int(index.searchsorted(_utc(end)))
    if t0 >= stop:
        raise ValueError(f"no bars in [{start}, {end})")
    return t0


def _kernel_sweep(
    c: pd.DataFrame,
    cls: type[Strategy],
    combos: list[dict[str, Any]],
    config: BacktestConfig,
    start: object = None,
    *,
    checked: Sequence[Any] | None = None,
):
    """``checked``: the combinations' validated parameters, where the caller has them already."""
    o = c["open"].to_numpy(dtype="float64")
    h = c["high"].to_numpy(dtype="float64")
    lo = c["low"].to_numpy(dtype="float64")
    cl = c["close"].to_numpy(dtype="float64")
    t0 = _first_bar(c.index, start, None)
    ppy = periods_per_year(c.index[t0:])
    cfg = K.sim_config(
        config.size,
        config.fees,
        config.slippage,
        config.init_cash,
        _DIRECTION[config.direction],
        ppy,
        sl=config.sl_stop,
        tp=config.tp_stop,
        trailing=config.trailing,
        start=t0,
        notional=config.size_type == "notional",
    )
    px = (o, h, lo, cl)
    if checked is None:
        checked = [cls.make_params(p) for p in combos]
    full = [p.model_dump() for p in checked]
    if cls.sweep_kernel is not None:
        res = _fused(c, px, cls, full, cfg, _instances(cls, checked))
        return res, f"numba:{cls.name}"
    # any other single-asset strategy: its own target() per combination, simulated in chunks
    out = np.empty((len(full), len(K.METRICS)))
    chunk = 256
    for i in range(0, len(full), chunk):
        states = np.vstack([cls(**p).target(c).to_numpy(dtype="float64") for p in full[i : i + chunk]])
        out[i : i + chunk] = K.sweep_states(*px, states, cfg)
    return out, "numba:generic"


def _fused(
    c: pd.DataFrame,
    px,
    cls: type[Strategy],
    full: list[dict[str, Any]],
    cfg: np.ndarray,
    strategies: list[Strategy] | None = None,
):
    """Run the strategy's declared fused kernel: each distinct indicator (by its declaration's key) computed
    once, one table per output, an index row per indicator; then checked against ``target()`` on the first
    combination, so a declaration that does not reproduce the strategy is refused, never reported."""
    spec = cls.sweep_kernel
    assert spec is not None
    kernel = K.FUSED.get(spec.kernel)
    if kernel is None:
        raise ParamError(
            f"strategy {cls.name!r} declares sweep kernel {spec.kernel!r}; kernels: {', '.join(K.FUSED)}"
        )
    if strategies is None:
        strategies = [cls(**p) for p in full]
    rows: dict[Any, int] = {}
    values: list[tuple[np.ndarray, ...]] = []
    index = {n: np.empty(len(full), dtype=np.int64) for n in spec.indicators}
    for i, s in enumerate(strategies):
        decl = s.indicators()
        for n in spec.indicators:
            ind = decl[n]
            if ind.key not in rows:
                v = ind(c)
                rows[ind.key] = len(values)
                values.append(v if isinstance(v, tuple) else (v,))
            index[n][i] = rows[ind.key]
    if len({len(v) for v in values}) != 1:
        raise ParamError(
            f"strategy {cls.name!r}: the indicators of sweep kernel {spec.kernel!r} differ in outputs"
        )
    tables = [np.vstack([v[j] for v in values]) for j in range(len(values[0]))]
    scalars = [np.array([p[n] for p in full], dtype="float64") for n in spec.scalars]
    res = kernel(*px, *tables, *(index[n] for n in spec.indicators), *scalars, cfg)
    ref = K.sweep_states(*px, strategies[0].target(c).to_numpy(dtype="float64")[None, :], cfg)[0]
    if not np.array_equal(res[0], ref, equal_nan=True):
        raise RuntimeError(
            f"strategy {cls.name!r}: its sweep kernel {spec.kernel!r} does not reproduce target() "
            f"(params {full[0]}: kernel {dict(zip(K.METRICS, res[0].tolist(), strict=True))}, target "
            f"{dict(zip(K.METRICS, ref.tolist(), strict=True))}); fix or remove its sweep_kernel"
        )
    return res


def _engine_sweep(
    data, cls: type[Strategy], combos: list[dict[str, Any]], config: BacktestConfig, start: object = None
) -> np.ndarray:
    out = np.empty((len(combos), len(K.METRICS)))
    for i, p in enumerate(combos):
        r = run_backtest(data, cls(**p), config, start=start)
        m = r.metrics
        out[i] = [
            m["total_return"],
            m["sharpe"],
            m["max_drawdown"],
            m["n_trades"],
            m["win_rate"],
            m["exposure"],
            float(r.equity.iloc[-1]),
        ]
    return out


def _best_with_dsr(
    table: pd.DataFrame, data: Any, cls: type[Strategy], config: BacktestConfig, start: object = None
) -> dict[str, Any]:
    """The best row, with its Sharpe deflated for the number of valid combinations tried (Bailey & López de
    Prado 2014), using the variance of the per-period Sharpe ratios across the combinations."""
    if table.empty:
        return {}
    names = list(cls.Params.model_fields)
    best = {c: table[c].iloc[0] for c in table.columns}
    frames = data if isinstance(data, Mapping) else {"": data}
    idx = next(iter(frames.values())).index
    if start is not None:
        idx = idx[idx >= _utc(start)]
    ppy = periods_per_year(idx)
    sr = table["sharpe"].to_numpy(dtype="float64") / math.sqrt(ppy)
    sr = sr[np.isfinite(sr)]
    out: dict[str, Any] = {"params": {n: _py(best[n]) for n in names}}
    out.update({m: _py(best[m]) for m in K.METRICS})
    if len(sr) >= 2 and np.isfinite(best["sharpe"]):
        # skew/kurtosis of the best combination's returns need its equity; a normal approximation is used here
        # (skew 0, kurtosis 3) and the full backtest of the best combination reports the exact DSR.
        n = len(idx)
        out["dsr_normal_approx"] = float(
            deflated_sharpe(
                best["sharpe"] / math.sqrt(ppy),
                n,
                0.0,
                3.0,
                n_trials=len(table),
                trials_sharpe_var=float(np.var(sr, ddof=1)),
            )
        )
        out["trials_sharpe_var"] = float(np.var(sr, ddof=1))
    return out


def _py(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return None if np.isnan(v) else float(v)
    return v


def evaluate(
    data: pd.DataFrame | Mapping[str, pd.DataFrame],
    strategy: type[Strategy],
    combos: list[dict[str, Any]],
    config: BacktestConfig,
    start: object = None,
) -> list[dict[str, float]]:
    """Metrics (``kernels.METRICS``) of each parameter combination, by the fastest exact path available."""
    if _kernel_ok(data, strategy, config):
        res = _kernel_sweep(data, strategy, combos, config, start)[0]
    else:
        res = _engine_sweep(data, strategy, combos, config, start)
    return [dict(zip(K.METRICS, map(float, row), strict=True)) for row in res]
