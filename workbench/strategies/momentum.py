"""Momentum strategies: moving-average cross, Donchian breakout, time-series momentum.

All return a target position in {-1, 0, +1} per bar (NaN during warm-up), decided at the bar's close.
Long-only or short-only trading is the backtest's ``direction`` setting, not the strategy's.

Warm-up (closed candles for the last bar's decision to equal the full history's): the cross and
time-series momentum depend on the last bar's indicators only (``slow`` bars; ``lookback + 1``); the
breakout holds its position until the exit channel, so it adds ``STATE_MEMORY`` times its longest channel.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from workbench.strategies.base import Param, Params, Strategy, register
from workbench.strategies.indicators import STATE_MEMORY, I, SweepKernel
from workbench.strategies.signals import cross_state, hysteresis

__all__ = ["Breakout", "SmaCross", "TimeSeriesMomentum", "donchian", "lookback_return"]


def _series(values: np.ndarray, like: pd.DataFrame, name: str) -> pd.Series:
    return pd.Series(values, index=like.index, name=name, copy=False)  # a fresh array: no copy


@register
class SmaCross(Strategy):
    """Long while SMA(fast) > SMA(slow), short while below (TA-Lib SMA on closes)."""

    name = "sma_cross"
    description = "moving-average cross: long above, short below"

    class Params(Params):
        fast: int = Param(10, low=2, high=200, step=1, doc="fast SMA period, bars")
        slow: int = Param(50, low=3, high=500, step=1, doc="slow SMA period, bars")

        def check(self) -> None:
            if self.fast >= self.slow:
                raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")

    sweep_kernel = SweepKernel("cross", ("fast", "slow"))

    def indicators(self):
        p = self.params
        return {
            "fast": I(talib.SMA, "close", bars=p.fast, timeperiod=p.fast, overlay=True),
            "slow": I(talib.SMA, "close", bars=p.slow, timeperiod=p.slow, overlay=True),
        }

    def target(self, data, features=None):
        ind = self.indicators()
        return _series(cross_state(ind["fast"](data), ind["slow"](data)), data, self.name)


@register
class Breakout(Strategy):
    """Donchian breakout: long when the close breaks above the highest high of the previous ``window`` bars,
    short when it breaks below the lowest low; a long exits below the lowest low of the previous
    ``exit_window`` bars (a short above the highest high)."""

    name = "breakout"
    description = "Donchian channel breakout"

    class Params(Params):
        window: int = Param(20, low=2, high=500, step=1, doc="entry channel, bars")
        exit_window: int = Param(10, low=2, high=500, step=1, doc="exit channel, bars")

    sweep_kernel = SweepKernel("channels", ("entry", "exit"))

    def indicators(self):
        p = self.params
        out = ("upper", "lower")
        return {
            "entry": I(
                donchian, "high", "low", bars=p.window + 1, window=p.window, outputs=out, overlay=True
            ),
            "exit": I(
                donchian,
                "high",
                "low",
                bars=p.exit_window + 1,
                window=p.exit_window,
                outputs=out,
                overlay=True,
            ),
        }

    def warmup(self) -> int:
        longest = max(self.params.window, self.params.exit_window)
        return longest + 1 + STATE_MEMORY * longest

    def target(self, data, features=None):
        c = data["close"].to_numpy(dtype="float64")
        ind = self.indicators()
        up, dn = ind["entry"](data)
        xup, xdn = ind["exit"](data)
        valid = ~np.isnan(up) & ~np.isnan(xup)
        state = hysteresis(c > up, c < xdn, c < dn, c > xup, valid)
        return _series(state, data, self.name)


def donchian(high: np.ndarray, low: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Highest high and lowest low of the ``window`` bars BEFORE each bar (the current bar excluded)."""
    return _prev(talib.MAX(high, window)), _prev(talib.MIN(low, window))


def _prev(a: np.ndarray) -> np.ndarray:
    """The value of the previous bar (channels exclude the current bar)."""
    out = np.empty_like(a)
    out[0] = np.nan
    out[1:] = a[:-1]
    return out


@register
class TimeSeriesMomentum(Strategy):
    """Long when the return over ``lookback`` bars exceeds ``threshold``, short below ``-threshold``,
    flat in between (Moskowitz, Ooi & Pedersen's time-series momentum, on bars)."""

    name = "tsmom"
    description = "time-series momentum: sign of the lookback return"

    class Params(Params):
        lookback: int = Param(168, low=2, high=2000, step=1, doc="bars")
        threshold: float = Param(0.0, low=0.0, high=0.5, doc="minimum |return| to take a side")

    sweep_kernel = SweepKernel("threshold", ("return",), scalars=("threshold",))

    def indicators(self):
        n = self.params.lookback
        return {"return": I(lookback_return, "close", bars=n + 1, lookback=n)}

    def target(self, data, features=None):
        r = self.indicators()["return"](data)
        th = self.params.threshold
        out = np.where(np.isnan(r), np.nan, np.where(r > th, 1.0, np.where(r < -th, -1.0, 0.0)))
        return _series(out, data, self.name)


def lookback_return(close: np.ndarray, lookback: int) -> np.ndarray:
    """close / close ``lookback`` bars before - 1 (TA-Lib ROCR - 1; NaN for the first ``lookback`` bars)."""
    return talib.ROCR(close, lookback) - 1.0
