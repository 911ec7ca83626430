"""Fused, cached numba kernels for parameter sweeps of the built-in strategies.

One pass per combination computes the strategy's state from precomputed indicator rows, simulates the
portfolio and accumulates its metrics; combinations run in parallel (``prange``) and nothing of size
``n_bars`` is kept per combination, so memory does not grow with the number of combinations. Indicators are
computed once per distinct parameter value with TA-Lib, exactly as the strategies compute them.

The simulation is the engine's ``size_type='fraction'`` convention (see :mod:`workbench.backtest.engine`),
single asset, no stops: the target decided at the close of t executes at the open of t+1 when it changes;
``V = cash + units·open``; ``units* = target·size·V/open``; buys fill at ``open·(1+slippage)`` and sells at
``open·(1−slippage)``; fees on the filled notional; a buy larger than the cash is filled partially. The tests
check every kernel against the vectorbt engine (final equity, trades) on the same cases.

Metrics per combination (columns of the result, see ``METRICS``): total_return, sharpe (one return per bar, the
first against the initial cash, ddof=1, annualised with sqrt(ppy); NaN with fewer than 3 returns), max_drawdown (negative), n_trades
(positions opened), win_rate (closed trades with pnl > 0), exposure (share of bars holding a position),
final_equity.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from workbench.strategies.signals import cross_step, hysteresis_step

METRICS = ("total_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "exposure", "final_equity")
_NM = len(METRICS)

LONG, SHORT, BOTH = 0, 1, 2


@njit(cache=True, inline="always")
def _clip(state: float, direction: int) -> float:
    if np.isnan(state):
        return 0.0
    if direction == LONG and state < 0:
        return 0.0
    if direction == SHORT and state > 0:
        return 0.0
    return state


@njit(cache=True, inline="always")
def _fill(cash, units, eff, po, fee, slip):
    """Trade to the target ``eff`` (fraction of value) at open price ``po``. Returns cash, units, fill price,
    filled units (signed) and fees."""
    v = cash + units * po
    d = eff * v / po - units
    if d > 0.0:
        p = po * (1.0 + slip)
        cost = d * p * (1.0 + fee)
        if cost > cash:
            d = cash / (p * (1.0 + fee)) if cash > 0.0 else 0.0
        fees = d * p * fee
        cash -= d * p + fees
    elif d < 0.0:
        p = po * (1.0 - slip)
        fees = -d * p * fee
        cash += -d * p - fees
    else:
        p = po
        fees = 0.0
    return cash, units + d, p, d, fees


@njit(cache=True)
def simulate(open_, close, state, size, fee, slip, init_cash, direction, ppy, out):
    """Simulate one state path (decided at closes) and write the metrics into ``out`` (length ``len(METRICS)``)."""
    n = open_.shape[0]
    cash = init_cash
    units = 0.0
    prev_eff = 0.0
    prev_val = init_cash
    peak = init_cash
    max_dd = 0.0
    s1 = 0.0
    s2 = 0.0
    n_trades = 0
    wins = 0
    closed = 0
    held = 0
    entry_p = 0.0
    entry_u = 0.0
    entry_fee = 0.0
    for t in range(n):
        eff = 0.0 if t == 0 else _clip(state[t - 1], direction) * size
        if eff == prev_eff and units == 0.0:
            continue  # flat and staying flat: value = cash, return 0, drawdown unchanged
        if eff != prev_eff:
            old_units = units
            cash, units, p, d, fees = _fill(cash, units, eff, open_[t], fee, slip)
            # trade bookkeeping: a position closes when units reach 0 or change sign
            if old_units != 0.0 and (units == 0.0 or (units > 0.0) != (old_units > 0.0)):
                close_fee = fees * (abs(old_units) / abs(d)) if d != 0.0 else 0.0
                pnl = (p - entry_p) * entry_u - entry_fee - close_fee
                closed += 1
                if pnl > 0.0:
                    wins += 1
                if units != 0.0:
                    entry_p = p
                    entry_u = units
                    entry_fee = fees - close_fee
                    n_trades += 1
            elif old_units == 0.0 and units != 0.0:
                entry_p = p
                entry_u = units
                entry_fee = fees
                n_trades += 1
            prev_eff = eff
        val = cash + units * close[t]
        if units != 0.0:
            held += 1
        r = val / prev_val - 1.0  # t = 0: against the initial cash
        s1 += r
        s2 += r * r
        prev_val = val
        if val > peak:
            peak = val
        elif val < peak:
            dd = val / peak - 1.0
            if dd < max_dd:
                max_dd = dd
    m = n  # one return per bar, the first against the initial cash (the engine prepends it likewise)
    mean = s1 / m if m > 0 else 0.0
    var = (s2 - m * mean * mean) / (m - 1) if m > 2 else 0.0
    out[0] = prev_val / init_cash - 1.0
    out[1] = mean / np.sqrt(var) * np.sqrt(ppy) if var > 0.0 else np.nan
    out[2] = max_dd
    out[3] = n_trades
    out[4] = wins / closed if closed > 0 else np.nan
    out[5] = held / n
    out[6] = prev_val


# ----------------------------------------------------------------------------- per-strategy fused kernels


@njit(cache=True, parallel=True)
def sweep_sma_cross(open_, close, sma, fast_i, slow_i, size, fee, slip, init_cash, direction, ppy):
    """``sma[k]`` is TA-Lib SMA of the close for the k-th distinct period; combo c uses rows fast_i[c], slow_i[c]."""
    nc = fast_i.shape[0]
    n = close.shape[0]
    res = np.empty((nc, _NM))
    for c in prange(nc):
        f = sma[fast_i[c]]
        s = sma[slow_i[c]]
        state = np.empty(n)
        cur = np.nan
        for t in range(n):
            cur = cross_step(cur, f[t], s[t])
            state[t] = cur
        simulate(open_, close, state, size, fee, slip, init_cash, direction, ppy, res[c])
    return res


@njit(cache=True, parallel=True)
def sweep_breakout(open_, close, up, dn, win_i, exit_i, size, fee, slip, init_cash, direction, ppy):
    """``up[k]``/``dn[k]``: highest high / lowest low of the previous period_k bars (excluding the current)."""
    nc = win_i.shape[0]
    n = close.shape[0]
    res = np.empty((nc, _NM))
    for c in prange(nc):
        u, d = up[win_i[c]], dn[win_i[c]]
        xu, xd = up[exit_i[c]], dn[exit_i[c]]
        state = np.empty(n)
        cur = 0.0
        started = False
        for t in range(n):
            if np.isnan(u[t]) or np.isnan(xu[t]):
                state[t] = cur if started else np.nan
                continue
            started = True
            px = close[t]
            cur = hysteresis_step(cur, px > u[t], px < xd[t], px < d[t], px > xu[t])
            state[t] = cur
        simulate(open_, close, state, size, fee, slip, init_cash, direction, ppy, res[c])
    return res


@njit(cache=True, parallel=True)
def sweep_tsmom(open_, close, ret, look_i, threshold, size, fee, slip, init_cash, direction, ppy):
    """``ret[k]``: close / close[period_k bars ago] - 1 (TA-Lib ROCR - 1)."""
    nc = look_i.shape[0]
    n = close.shape[0]
    res = np.empty((nc, _NM))
    for c in prange(nc):
        r = ret[look_i[c]]
        th = threshold[c]
        state = np.empty(n)
        for t in range(n):
            x = r[t]
            state[t] = np.nan if np.isnan(x) else (1.0 if x > th else (-1.0 if x < -th else 0.0))
        simulate(open_, close, state, size, fee, slip, init_cash, direction, ppy, res[c])
    return res


@njit(cache=True, parallel=True)
def sweep_bands(open_, close, z, z_i, entry, exit_, size, fee, slip, init_cash, direction, ppy):
    """Band reversion on a z-score row per window: long below -entry until z >= -exit, short above entry."""
    nc = z_i.shape[0]
    n = close.shape[0]
    res = np.empty((nc, _NM))
    for c in prange(nc):
        zz = z[z_i[c]]
        en, ex = entry[c], exit_[c]
        state = np.empty(n)
        cur = 0.0
        started = False
        for t in range(n):
            x = zz[t]
            if np.isnan(x):
                state[t] = cur if started else np.nan
                continue
            started = True
            cur = hysteresis_step(cur, x < -en, x >= -ex, x > en, x <= ex)
            state[t] = cur
        simulate(open_, close, state, size, fee, slip, init_cash, direction, ppy, res[c])
    return res


@njit(cache=True, parallel=True)
def sweep_levels(open_, close, osc, osc_i, lower, upper, exit_, size, fee, slip, init_cash, direction, ppy):
    """Oscillator reversion (RSI): long below ``lower`` until above ``exit``, short above ``upper`` until below."""
    nc = osc_i.shape[0]
    n = close.shape[0]
    res = np.empty((nc, _NM))
    for c in prange(nc):
        o = osc[osc_i[c]]
        lo, up, ex = lower[c], upper[c], exit_[c]
        state = np.empty(n)
        cur = 0.0
        started = False
        for t in range(n):
            x = o[t]
            if np.isnan(x):
                state[t] = cur if started else np.nan
                continue
            started = True
            cur = hysteresis_step(cur, x < lo, x > ex, x > up, x < ex)
            state[t] = cur
        simulate(open_, close, state, size, fee, slip, init_cash, direction, ppy, res[c])
    return res


@njit(cache=True, parallel=True)
def sweep_states(open_, close, states, size, fee, slip, init_cash, direction, ppy):
    """Generic: one precomputed state row per combination (any strategy; memory grows with combinations)."""
    nc = states.shape[0]
    res = np.empty((nc, _NM))
    for c in prange(nc):
        simulate(open_, close, states[c], size, fee, slip, init_cash, direction, ppy, res[c])
    return res
