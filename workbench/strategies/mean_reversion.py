"""Mean-reversion strategies: Bollinger-band reversion, RSI reversion, and pairs trading on the z-score of a
spread. Each returns a target position per bar (NaN in warm-up), decided at the bar's close.

All three hold a state (enter on one level, exit on another), so their warm-up adds ``STATE_MEMORY`` times the
lookback to the indicators' own: Bollinger ``window``, RSI ``period + 1`` plus Wilder's smoothing warm-up
(``smoothing_bars(1 / period)``, about 27x the period), pairs ``2 * window - 1`` (the hedge ratio's window,
then the z-score's over the spread). The pairs strategy also needs the bar its position opened on (the
hedge ratio is held from there); the same memory covers it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import talib

from workbench.strategies.base import Param, Params, Strategy, register
from workbench.strategies.indicators import STATE_MEMORY, I, SweepKernel, shared_index, smoothing_bars
from workbench.strategies.signals import hysteresis

__all__ = [
    "BollingerReversion",
    "PairsZScore",
    "RsiReversion",
    "bollinger_z",
    "pairs_spread",
    "rsi_bars",
]


def bollinger_z(close: np.ndarray, window: int) -> np.ndarray:
    """(close - SMA) / population std over ``window`` bars (TA-Lib's BBANDS conventions)."""
    mid = talib.SMA(close, window)
    sd = talib.STDDEV(close, window, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(sd > 0, (close - mid) / sd, 0.0)
    z[np.isnan(sd)] = np.nan  # warm-up stays undecided
    return z


def rsi_bars(period: int) -> int:
    """Closed candles for TA-Lib's RSI at the last bar to equal the full history's within 1e-9 relative:
    ``period + 1`` for the first value, then Wilder's smoothing (alpha = 1/period) to forget its seed."""
    return period + 1 + smoothing_bars(1.0 / period)


@register
class BollingerReversion(Strategy):
    """Long when the close falls below the lower band (z < -entry), short above the upper band (z > entry);
    a long exits once z >= -exit, a short once z <= exit (exit = 0: the middle band)."""

    name = "bollinger"
    description = "Bollinger-band mean reversion"

    class Params(Params):
        window: int = Param(20, low=3, high=500, step=1, doc="bars")
        entry: float = Param(2.0, low=0.5, high=4.0, step=0.25, doc="band width in standard deviations")
        exit: float = Param(0.0, low=-1.0, high=2.0, step=0.25, doc="exit z (0: middle band)")

        def check(self) -> None:
            if self.exit >= self.entry:
                raise ValueError(f"exit ({self.exit}) must be below entry ({self.entry})")

    sweep_kernel = SweepKernel("bands", ("z",), scalars=("entry", "exit"))

    def indicators(self):
        p = self.params
        w = p.window
        return {
            "z": I(bollinger_z, "close", bars=w, window=w),
            "bands": I(
                talib.BBANDS,
                "close",
                bars=w,
                timeperiod=w,
                nbdevup=p.entry,
                nbdevdn=p.entry,
                outputs=("upper", "middle", "lower"),
                overlay=True,
            ),
        }

    def warmup(self) -> int:
        return self.params.window + STATE_MEMORY * self.params.window

    def target(self, data, features=None):
        p = self.params
        z = self.indicators()["z"](data)
        valid = ~np.isnan(z)
        state = hysteresis(z < -p.entry, z >= -p.exit, z > p.entry, z <= p.exit, valid)
        return pd.Series(state, index=data.index, name=self.name, copy=False)


@register
class RsiReversion(Strategy):
    """Long when RSI < lower, exit when RSI > exit_long; short when RSI > upper, exit when RSI < exit_short."""

    name = "rsi_reversion"
    description = "RSI overbought/oversold reversion"

    class Params(Params):
        period: int = Param(14, low=2, high=100, step=1, doc="RSI period (TA-Lib, Wilder smoothing)")
        lower: float = Param(30.0, low=5.0, high=50.0, step=1.0)
        upper: float = Param(70.0, low=50.0, high=95.0, step=1.0)
        exit: float = Param(50.0, low=20.0, high=80.0, step=1.0, doc="RSI level that closes either side")

        def check(self) -> None:
            if not self.lower < self.exit < self.upper:
                raise ValueError(f"need lower < exit < upper (got {self.lower}, {self.exit}, {self.upper})")

    sweep_kernel = SweepKernel("levels", ("rsi",), scalars=("lower", "upper", "exit"))

    def indicators(self):
        n = self.params.period
        return {"rsi": I(talib.RSI, "close", bars=rsi_bars(n), timeperiod=n)}

    def warmup(self) -> int:
        return rsi_bars(self.params.period) + STATE_MEMORY * self.params.period

    def target(self, data, features=None):
        p = self.params
        rsi = self.indicators()["rsi"](data)
        valid = ~np.isnan(rsi)
        state = hysteresis(rsi < p.lower, rsi > p.exit, rsi > p.upper, rsi < p.exit, valid)
        return pd.Series(state, index=data.index, name=self.name, copy=False)


@register
class PairsZScore(Strategy):
    """Trade the spread log(A) - beta * log(B), beta a rolling OLS hedge ratio over ``window`` bars (causal).
    z = (spread - rolling mean) / rolling std. Short the spread when z > entry, long when z < -entry, exit
    when |z| < exit. Legs are weighted 1 : beta (beta as of the entry bar, held until the exit) and scaled so
    gross exposure is 1."""

    name = "pairs_zscore"
    description = "pairs trading on the z-score of a hedged log-price spread"
    assets = 2

    class Params(Params):
        window: int = Param(168, low=10, high=2000, step=1, doc="bars for the hedge ratio and the z-score")
        entry: float = Param(2.0, low=0.5, high=4.0, step=0.25)
        exit: float = Param(0.5, low=0.0, high=2.0, step=0.25)

        def check(self) -> None:
            if self.exit >= self.entry:
                raise ValueError(f"exit ({self.exit}) must be below entry ({self.entry})")

    def indicators(self):
        w = self.params.window
        return {"spread": I(pairs_spread, "close", bars=2 * w - 1, window=w, outputs=("beta", "z"))}

    def warmup(self) -> int:
        return 2 * self.params.window - 1 + STATE_MEMORY * self.params.window

    def target(self, data: Mapping[str, pd.DataFrame], features=None):
        if not isinstance(data, Mapping) or len(data) != 2:
            raise ValueError(
                "pairs_zscore needs exactly two assets (e.g. --symbol BTC/USDT --symbol ETH/USDT)"
            )
        (sa, _), (sb, _) = list(data.items())
        idx = shared_index(data)
        beta, z = self.indicators()["spread"](data)
        valid = ~np.isnan(z)
        p = self.params
        state = hysteresis(z < -p.entry, np.abs(z) < p.exit, z > p.entry, np.abs(z) < p.exit, valid)
        # the hedge ratio is fixed when a position opens and held until it closes (no bar-by-bar rebalancing)
        st = pd.Series(state)
        opened = st.ne(st.shift(1)) & st.ne(0) & st.notna()
        held_beta = (
            pd.Series(np.where(opened, beta, np.nan))
            .where(st.ne(0))
            .groupby((st != st.shift(1)).cumsum())
            .ffill()
        )
        hb = held_beta.to_numpy()
        gross = 1.0 + np.abs(hb)
        wa = np.where(st.to_numpy() == 0, 0.0, state / gross)
        wb = np.where(st.to_numpy() == 0, 0.0, -state * hb / gross)
        wa[np.isnan(state)] = np.nan
        wb[np.isnan(state)] = np.nan
        return pd.DataFrame({sa: wa, sb: wb}, index=idx)


def pairs_spread(close_a: np.ndarray, close_b: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The hedge ratio beta (rolling OLS of log A on log B over ``window`` bars) and the z-score of the spread
    log(A) - beta * log(B) over ``window`` bars (valid from bar ``2 * window - 2``)."""
    la, lb = np.log(close_a), np.log(close_b)
    beta = _rolling_ols_beta(la, lb, window)
    spread = la - beta * lb
    mean = _window_mean(spread, window)
    sd = np.sqrt(np.maximum(_window_mean(spread * spread, window) - mean * mean, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (spread - mean) / sd
    return beta, z


def _window_mean(a: np.ndarray, window: int) -> np.ndarray:
    """Mean of the trailing ``window`` values (NaN before), each window summed afresh: unlike a running sum
    (TA-Lib's SMA), the value depends on the window's values only, so a short buffer and the full history
    give the same bits (the hedge ratio is a position size, not only a sign)."""
    out = np.full(a.shape[0], np.nan)
    if a.shape[0] >= window:
        out[window - 1 :] = np.lib.stride_tricks.sliding_window_view(a, window).mean(axis=-1)
    return out


def _rolling_ols_beta(y: np.ndarray, x: np.ndarray, window: int) -> np.ndarray:
    """Slope of y on x over the trailing ``window`` bars (inclusive of the current bar)."""
    mx, my = _window_mean(x, window), _window_mean(y, window)
    mxy, mxx = _window_mean(x * y, window), _window_mean(x * x, window)
    var = mxx - mx * mx
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, (mxy - mx * my) / var, np.nan)
