"""Declared indicators, warm-up rules and fused-sweep declarations of the strategies.

A strategy names its indicators (:meth:`Strategy.indicators`, as backtesting.py's ``I()`` does): each is an
:class:`Indicator`, a function of some candle columns and parameters, with the number of closed candles its
value at the last bar needs (``bars``). The strategy's :meth:`~Strategy.target` computes its indicators through
these declarations, so the sweep (one indicator row per distinct parameter value, fed to a fused kernel), the
live engine (how many closed candles to keep: :meth:`Strategy.warmup`, freqtrade's ``startup_candle_count``)
and charts (the indicator lines) all use the very computation the backtest used.

Warm-up rules (``bars``; the test ``tests/test_warmup.py`` checks each on real data at many cut points):

- A windowed indicator (SMA, rolling std, max/min, rate of change) over ``n`` bars needs ``n`` bars (``n + 1``
  when it reads the bar before the window: ROCR, a Donchian channel of the previous ``n`` bars). TA-Lib keeps
  running sums, so a long history and a short buffer agree to rounding (~1e-13 relative), not bit for bit.
- A recursive smoother (EMA, Wilder's RSI/ATR) depends on the whole history; its seed's weight decays as
  ``(1 - alpha)^k``. :func:`smoothing_bars` is the ``k`` after which that weight is below ``SMOOTHING_TOL``
  (1e-12: RSI near 0 or 100 amplifies its seed's error ~1000x), so a buffer of ``lookback +
  smoothing_bars(alpha)`` bars gives the full-history value within 1e-9 relative (TA-Lib's "unstable
  period", chosen per period instead of set globally with ``talib.set_unstable_period``). Wilder:
  ``alpha = 1 / period``; EMA: ``alpha = 2 / (period + 1)``.
- A strategy that holds a state (hysteresis: enter on one level, exit on another; a breakout held until the
  exit channel) depends on the last bar where its state was decided regardless of the state before (an
  entry, or a bar where both exits hold). Such a strategy adds ``STATE_MEMORY`` (10) times its longest
  lookback to its indicators' warm-up. On Binance BTC/USDT 1h (2021-2026) and 5m (2024), for the parameter
  sets measured, the longest run without such a bar was 1.9x the window for Bollinger and 2.7x the longest
  channel for the breakout; RSI's reached 10x the period, inside its own ~27x smoothing warm-up. 10x leaves a
  wide margin, but it is a bound measured on real data, not a proof: a position held longer than that
  without any entry or exit signal can differ from the backtest's.
- Exact ties are the one documented exception: a cross whose two lines are exactly equal, or a z-score that
  is exactly on a level, keeps the previous state, and rounding can put a buffer's value on the other side.

:class:`SweepKernel` declares which fused numba kernel of :mod:`workbench.backtest.kernels` (``FUSED``)
reproduces a strategy's state from its indicator rows, so the sweep needs no per-strategy switch. The sweep
checks the declaration against the strategy's own :meth:`target` on the first combination and refuses a
kernel that disagrees.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "SMOOTHING_TOL",
    "STATE_MEMORY",
    "I",
    "Indicator",
    "SweepKernel",
    "shared_index",
    "smoothing_bars",
]

SMOOTHING_TOL = 1e-12
"""A recursive smoother's warm-up ends when its seed's weight falls below this."""

STATE_MEMORY = 10
"""Stateful strategies keep this many times their longest lookback on top of their indicators' warm-up."""


def smoothing_bars(alpha: float, tol: float = SMOOTHING_TOL) -> int:
    """Bars after which a recursive smoother with factor ``alpha`` forgets its seed to within ``tol``."""
    if not 0 < alpha <= 1:
        raise ValueError(f"smoothing factor must be in (0, 1], got {alpha}")
    if alpha == 1:
        return 0
    return math.ceil(math.log(tol) / math.log(1.0 - alpha))


Values = np.ndarray | tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Indicator:
    """One declared indicator: ``func(*columns, **params)`` -> an array (or a tuple of arrays, ``outputs``).

    ``inputs`` are candle columns. On a dict of several assets (pairs), each input is taken from every asset
    in order, on the bars the assets share: ``inputs=("close",)`` calls ``func(close_a, close_b, ...)``.
    ``bars``: closed candles the value at the last bar needs (see the module docstring). ``overlay``: drawn
    on the price chart (a moving average, a channel) rather than in a panel of its own (RSI, a z-score).
    """

    func: Callable[..., Values]
    inputs: tuple[str, ...]
    params: tuple[tuple[str, Any], ...]
    bars: int
    outputs: tuple[str, ...] = ("value",)
    overlay: bool = False
    doc: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.bars < 1:
            raise ValueError(f"indicator {self.label}: bars must be >= 1, got {self.bars}")

    @property
    def label(self) -> str:
        name = getattr(self.func, "__name__", repr(self.func))
        return f"{name}({', '.join(f'{k}={v}' for k, v in self.params)})"

    @property
    def key(self) -> tuple[Any, ...]:
        """Equal for two declarations that compute the same values (the sweep computes each key once)."""
        return (self.func, self.inputs, self.params)

    def __call__(self, data: pd.DataFrame | Mapping[str, pd.DataFrame]) -> Values:
        if isinstance(data, Mapping):
            idx = shared_index(data)
            args = [f.loc[idx, c].to_numpy(dtype="float64") for f in data.values() for c in self.inputs]
        else:
            args = [data[c].to_numpy(dtype="float64") for c in self.inputs]
        out = self.func(*args, **dict(self.params))
        n_out = len(out) if isinstance(out, tuple) else 1
        if n_out != len(self.outputs):
            raise ValueError(
                f"indicator {self.label} returned {n_out} arrays, declared outputs {self.outputs}"
            )
        return out

    def frame(self, data: pd.DataFrame | Mapping[str, pd.DataFrame], name: str) -> pd.DataFrame:
        """The values as columns ``name`` (one output) or ``name.output`` (several), on the data's bars."""
        out = self(data)
        arrays = out if isinstance(out, tuple) else (out,)
        idx = shared_index(data) if isinstance(data, Mapping) else data.index
        cols = [name] if len(arrays) == 1 else [f"{name}.{o}" for o in self.outputs]
        return pd.DataFrame(dict(zip(cols, arrays, strict=True)), index=idx)


def shared_index(data: Mapping[str, pd.DataFrame]) -> pd.Index:
    """The bars every asset has (the index multi-asset indicators and targets are computed on)."""
    frames = list(data.values())
    if not frames:
        raise ValueError("no market data given")
    idx = frames[0].index
    for f in frames[1:]:
        idx = idx.intersection(f.index)
    return idx


def I(  # noqa: E743  (backtesting.py's spelling)
    func: Callable[..., Values],
    *inputs: str,
    bars: int,
    outputs: tuple[str, ...] = ("value",),
    overlay: bool = False,
    doc: str = "",
    **params: Any,
) -> Indicator:
    """Declare an indicator: ``I(talib.SMA, "close", bars=n, timeperiod=n, overlay=True)``."""
    return Indicator(
        func, tuple(inputs or ("close",)), tuple(sorted(params.items())), int(bars), outputs, overlay, doc
    )


@dataclass(frozen=True)
class SweepKernel:
    """A strategy's fused sweep: the kernel (a name in ``workbench.backtest.kernels.FUSED``), the declared
    indicators it reads (their values share one table per output; each gets an index row per combination)
    and the parameters it takes per combination as numbers (``scalars``), in the kernel's argument order."""

    kernel: str
    indicators: tuple[str, ...]
    scalars: tuple[str, ...] = ()
