"""Mean-reversion strategies: Bollinger-band reversion, RSI reversion, and pairs trading on the z-score of a
spread. Each returns a target position per bar (NaN in warm-up), decided at the bar's close."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import talib

from workbench.strategies.base import Param, Params, Strategy, register
from workbench.strategies.signals import hysteresis

__all__ = ["BollingerReversion", "PairsZScore", "RsiReversion"]


def bollinger_z(close: np.ndarray, window: int) -> np.ndarray:
    """(close - SMA) / population std over ``window`` bars (TA-Lib's BBANDS conventions)."""
    mid = talib.SMA(close, window)
    sd = talib.STDDEV(close, window, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(sd > 0, (close - mid) / sd, 0.0)
    z[np.isnan(sd)] = np.nan  # warm-up stays undecided
    return z


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

    def target(self, data, features=None):
        c = data["close"].to_numpy(dtype="float64")
        p = self.params
        z = bollinger_z(c, p.window)
        valid = ~np.isnan(z)
        state = hysteresis(z < -p.entry, z >= -p.exit, z > p.entry, z <= p.exit, valid)
        return pd.Series(state, index=data.index, name=self.name)


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

    def target(self, data, features=None):
        c = data["close"].to_numpy(dtype="float64")
        p = self.params
        rsi = talib.RSI(c, p.period)
        valid = ~np.isnan(rsi)
        state = hysteresis(rsi < p.lower, rsi > p.exit, rsi > p.upper, rsi < p.exit, valid)
        return pd.Series(state, index=data.index, name=self.name)


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

    def target(self, data: Mapping[str, pd.DataFrame], features=None):
        if not isinstance(data, Mapping) or len(data) != 2:
            raise ValueError(
                "pairs_zscore needs exactly two assets (e.g. --symbol BTC/USDT --symbol ETH/USDT)"
            )
        (sa, a), (sb, b) = list(data.items())
        idx = a.index.intersection(b.index)
        la = np.log(a.loc[idx, "close"].to_numpy(dtype="float64"))
        lb = np.log(b.loc[idx, "close"].to_numpy(dtype="float64"))
        w = self.params.window
        beta = _rolling_ols_beta(la, lb, w)
        spread = la - beta * lb
        z = (spread - talib.SMA(spread, w)) / talib.STDDEV(spread, w, 1.0)
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


def _rolling_ols_beta(y: np.ndarray, x: np.ndarray, window: int) -> np.ndarray:
    """Slope of y on x over the trailing ``window`` bars (inclusive of the current bar)."""
    mx, my = talib.SMA(x, window), talib.SMA(y, window)
    mxy, mxx = talib.SMA(x * y, window), talib.SMA(x * x, window)
    var = mxx - mx * mx
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, (mxy - mx * my) / var, np.nan)
