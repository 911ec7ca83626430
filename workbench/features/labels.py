"""Prediction targets. Forward-looking BY DESIGN: never use them as features.

Alignment: the label at bar ``t`` describes what happens after the close of bar ``t`` (the moment a
decision made on the features of ``candles[:t+1]`` can act), over the next ``horizon`` bars
``t+1..t+horizon``. It uses bars ``t..t+horizon`` only (the vol scale of :func:`triple_barrier` also bars
before ``t``), and it is NaN where those bars run past the end of the data (the last ``horizon`` bars), so a
label that is known never changes when more data arrives.

Horizons count bars (positions), not clock time: if the candles have gaps, bar ``t+h`` may lie more than
``h`` timeframes after ``t``. Fill or split gaps first (:mod:`workbench.features.clean`) when that matters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["direction", "forward_returns", "triple_barrier"]


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer number of bars, got {horizon!r}")
    return int(horizon)


def _close(close: pd.Series | pd.DataFrame) -> pd.Series:
    if isinstance(close, pd.DataFrame):
        if "close" not in close.columns:
            raise ValueError("expected a close Series or Candles with a 'close' column")
        return close["close"]
    return close


def forward_returns(close: pd.Series | pd.DataFrame, horizon: int) -> pd.Series:
    """Simple forward return ``close[t+h] / close[t] - 1``; NaN for the last ``h`` bars.

    ``close``: a Series (or Candles, whose ``close`` is used). Returns float64 ``fwd_ret_{h}``.
    """
    h = _check_horizon(horizon)
    c = _close(close)
    x = c.to_numpy("float64")
    out = np.full(len(x), np.nan)
    if len(x) > h:
        out[:-h] = x[h:] / x[:-h] - 1.0
    return pd.Series(out, index=c.index, name=f"fwd_ret_{h}")


def direction(close: pd.Series | pd.DataFrame, horizon: int, threshold: float = 0.0) -> pd.Series:
    """Sign of the forward return with a dead zone: +1 if ``r > threshold``, -1 if ``r < -threshold``,
    else 0, where ``r = close[t+h] / close[t] - 1``. Float64 with NaN for the last ``h`` bars."""
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"direction: threshold must be a finite number >= 0, got {threshold!r}")
    r = forward_returns(close, horizon)
    x = r.to_numpy()
    out = np.where(x > threshold, 1.0, np.where(x < -threshold, -1.0, 0.0))
    out[np.isnan(x)] = np.nan
    return pd.Series(out, index=r.index, name=f"dir_{_check_horizon(horizon)}")


def triple_barrier(
    candles: pd.DataFrame,
    horizon: int,
    pt: float | None,
    sl: float | None,
    vol_window: int | None = None,
) -> pd.DataFrame:
    """Triple-barrier labels (López de Prado): which of take-profit, stop-loss or time comes first.

    At bar ``t`` the barriers are ``upper = close_t * (1 + pt * s_t)`` and ``lower = close_t * (1 - sl * s_t)``
    where ``s_t = 1`` (``pt``/``sl`` are fractions, 0.02 = 2 %) or, with ``vol_window``, the sample standard
    deviation (ddof=1) of the last ``vol_window`` one-bar log returns ``log(close_i / close_{i-1})``,
    ``i = t-vol_window+1..t`` (causal; ``pt``/``sl`` are then multiples of that volatility). ``pt`` or ``sl``
    None disables that barrier.

    The barriers are checked on bars ``t+1..t+horizon`` in order: the upper is touched when
    ``high >= upper``, the lower when ``low <= lower``. The first bar that touches decides; if one bar touches
    BOTH, the stop-loss counts (conservative: the bar's path is unknown).

    Returns a DataFrame on the candles' index with columns

    - ``label``: +1 (take-profit first), -1 (stop-loss first), 0 (neither by bar ``t+horizon``); float64, NaN
      where bar ``t+horizon`` is past the data (also when a barrier was touched before) or ``s_t`` is NaN;
    - ``t1``: the exit time, the open time of the touching bar or of bar ``t+horizon`` (NaT where no label);
    - ``ret``: the return to the exit, ``upper/close_t - 1`` or ``lower/close_t - 1`` at a barrier (the
      barrier price: a bar that gaps through it would really fill worse), else ``close[t+h]/close_t - 1``.
    """
    h = _check_horizon(horizon)
    for name, v in (("pt", pt), ("sl", sl)):
        if v is not None and (not np.isfinite(v) or v <= 0):
            raise ValueError(f"triple_barrier: {name} must be a positive number or None, got {v!r}")
    close = candles["close"].to_numpy("float64")
    high = candles["high"].to_numpy("float64")
    low = candles["low"].to_numpy("float64")
    n = len(close)
    if vol_window is None:
        s = np.ones(n)
    else:
        if isinstance(vol_window, bool) or not isinstance(vol_window, int | np.integer) or vol_window < 2:
            raise ValueError(f"triple_barrier: vol_window must be an integer >= 2, got {vol_window!r}")
        logret = np.full(n, np.nan)
        logret[1:] = np.log(close[1:] / close[:-1])
        s = pd.Series(logret).rolling(int(vol_window), min_periods=int(vol_window)).std().to_numpy("float64")
    upper = close * (1.0 + pt * s) if pt is not None else np.full(n, np.inf)
    lower = close * (1.0 - sl * s) if sl is not None else np.full(n, -np.inf)

    m = max(n - h, 0)  # bars with a complete horizon: t = 0..n-h-1
    label = np.full(n, np.nan)
    exit_pos = np.full(n, -1, dtype=np.int64)
    ret = np.full(n, np.nan)
    if m:
        valid = np.isfinite(s[:m])
        undecided = valid.copy()
        lab = np.zeros(m)
        pos = np.full(m, -1, dtype=np.int64)
        r = np.full(m, np.nan)
        t = np.arange(m)
        for j in range(1, h + 1):
            hi, lo = high[j : j + m], low[j : j + m]
            stop = undecided & (lo <= lower[:m])
            take = undecided & (hi >= upper[:m]) & ~stop
            lab[stop], pos[stop], r[stop] = -1.0, t[stop] + j, lower[:m][stop] / close[:m][stop] - 1.0
            lab[take], pos[take], r[take] = 1.0, t[take] + j, upper[:m][take] / close[:m][take] - 1.0
            undecided &= ~(stop | take)
        pos[undecided] = t[undecided] + h
        r[undecided] = close[h : h + m][undecided] / close[:m][undecided] - 1.0
        lab[~valid], pos[~valid], r[~valid] = np.nan, -1, np.nan
        label[:m], exit_pos[:m], ret[:m] = lab, pos, r
    index = pd.DatetimeIndex(candles.index)
    t1 = pd.Series(pd.NaT, index=index, dtype=index.dtype)
    has = exit_pos >= 0
    t1[has] = index[exit_pos[has]]
    return pd.DataFrame({"label": label, "t1": t1, "ret": ret}, index=candles.index)
