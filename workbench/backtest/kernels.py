"""Fused, cached numba kernels for parameter sweeps of the strategies that declare one (``FUSED``, named by
``Strategy.sweep_kernel``; the built-ins do).

One pass per combination computes the strategy's state from precomputed indicator rows, simulates the
portfolio and accumulates its metrics; combinations run in parallel (``prange``) and nothing of size
``n_bars`` is kept per combination, so memory does not grow with the number of combinations. Indicators are
computed once per distinct parameter value with TA-Lib, exactly as the strategies compute them.

The simulation is the backtest's own: every kernel steps its state path through
:func:`workbench.sim.portfolio.bar_step`, the bar step that ``run_backtest`` records, so sweeps and backtests
share the fill and cost model, the sizing and the stop rules (see :mod:`workbench.backtest.engine`), single
asset, fraction or notional sizing, with or without stops. Bars before ``cfg[start]`` only warm the
indicators up, as ``run_backtest(start=...)`` does. The tests check every kernel against ``run_backtest``.

Metrics per combination (columns of the result, see ``METRICS``): total_return, sharpe (one return per bar, the
first against the initial cash, ddof=1, annualised with sqrt(ppy); NaN with fewer than 3 returns), max_drawdown (negative), n_trades
(closed trades, as in the backtest's metrics), win_rate (closed trades with pnl > 0), exposure (share of bars holding a position),
final_equity.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from workbench.metricdefs import keys as metric_keys
from workbench.sim.portfolio import PREV, UNITS, bar_step, new_state
from workbench.strategies.signals import cross_step, hysteresis_step

# the column names come from the metric registry (labels and formats for the CLI and the reports)
METRICS = metric_keys(
    "total_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "exposure", "final_equity"
)
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


# the simulation settings, packed in one float64 array so that every kernel takes them alike
CFG_FIELDS = (
    "size", "fee", "slippage", "init_cash", "direction", "ppy", "sl", "tp", "trailing", "start", "notional",
)  # fmt: skip
(_SIZE, _FEE, _SLIP, _CASH, _DIR, _PPY, _SL, _TP, _TRAIL, _START, _NOTIONAL) = range(len(CFG_FIELDS))


def sim_config(
    size: float,
    fee: float,
    slippage: float,
    init_cash: float,
    direction: int,
    ppy: float,
    sl: float | None = None,
    tp: float | None = None,
    trailing: bool = False,
    start: int = 0,
    notional: bool = False,
) -> np.ndarray:
    """The settings array of the kernels (``CFG_FIELDS``); ``start`` is the first bar simulated (the bars
    before it only warm the indicators up)."""
    nan = np.nan
    return np.array(
        [size, fee, slippage, init_cash, direction, ppy, nan if sl is None else sl, nan if tp is None else tp,
         1.0 if trailing else 0.0, start, 1.0 if notional else 0.0],
        dtype=np.float64,
    )  # fmt: skip


@njit(cache=True)
def simulate(open_, high, low, close, state, cfg, out):
    """Simulate one state path (decided at closes) from bar ``cfg[start]`` with the shared bar step
    (:func:`workbench.sim.portfolio.bar_step`), and write the metrics into ``out`` (length ``len(METRICS)``)."""
    n = open_.shape[0]
    size, direction = cfg[_SIZE], int(cfg[_DIR])
    fee, slip, init_cash, sl, tp = cfg[_FEE], cfg[_SLIP], cfg[_CASH], cfg[_SL], cfg[_TP]
    trailing = cfg[_TRAIL] != 0.0
    notional = cfg[_NOTIONAL] != 0.0
    t0 = int(cfg[_START])
    cash = init_cash
    st = new_state(1)
    fills = np.empty((1, 6))
    trades = np.empty((2, 11))
    eff = np.empty(1)
    prev_val = init_cash
    peak = init_cash
    max_dd = 0.0
    s1 = 0.0
    s2 = 0.0
    wins = 0
    closed = 0
    held = 0
    stops = sl == sl or tp == tp
    for t in range(t0, n):
        eff[0] = 0.0 if t == 0 else _clip(state[t - 1], direction) * size
        if eff[0] == st[0, PREV] and st[0, UNITS] == 0.0:
            r = 0.0  # flat and staying flat: value = cash, return 0, drawdown unchanged
            s1 += r
            continue
        if eff[0] == st[0, PREV] and not stops:
            nt = 0  # holding, no order and no stop: the bar step would not fill; only mark the bar
        else:
            cash, _, nt = bar_step(
                t, open_[t : t + 1], high[t : t + 1], low[t : t + 1], eff, cash, st, notional, fee, slip, sl,
                tp, trailing, fills, 0, trades, 0, False,
            )  # fmt: skip
        for i in range(nt):
            closed += 1
            if trades[i, 8] > 0.0:
                wins += 1
        units = st[0, UNITS]
        val = cash + units * close[t]
        if units != 0.0:
            held += 1
        r = val / prev_val - 1.0  # the first bar: against the initial cash
        s1 += r
        s2 += r * r
        prev_val = val
        if val > peak:
            peak = val
        elif val < peak:
            dd = val / peak - 1.0
            if dd < max_dd:
                max_dd = dd
    m = n - t0  # one return per bar, the first against the initial cash (the engine prepends it likewise)
    mean = s1 / m if m > 0 else 0.0
    var = (s2 - m * mean * mean) / (m - 1) if m > 2 else 0.0
    out[0] = prev_val / init_cash - 1.0
    out[1] = mean / np.sqrt(var) * np.sqrt(cfg[_PPY]) if var > 0.0 else np.nan
    out[2] = max_dd
    out[3] = closed
    out[4] = wins / closed if closed > 0 else np.nan
    out[5] = held / m if m > 0 else np.nan
    out[6] = prev_val


# ----------------------------------------------------------------------------- per-strategy fused kernels


@njit(cache=True, parallel=True)
def sweep_sma_cross(open_, high, low, close, sma, fast_i, slow_i, cfg):
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
        simulate(open_, high, low, close, state, cfg, res[c])
    return res


@njit(cache=True, parallel=True)
def sweep_breakout(open_, high, low, close, up, dn, win_i, exit_i, cfg):
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
        simulate(open_, high, low, close, state, cfg, res[c])
    return res


@njit(cache=True, parallel=True)
def sweep_tsmom(open_, high, low, close, ret, look_i, threshold, cfg):
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
        simulate(open_, high, low, close, state, cfg, res[c])
    return res


@njit(cache=True, parallel=True)
def sweep_bands(open_, high, low, close, z, z_i, entry, exit_, cfg):
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
        simulate(open_, high, low, close, state, cfg, res[c])
    return res


@njit(cache=True, parallel=True)
def sweep_levels(open_, high, low, close, osc, osc_i, lower, upper, exit_, cfg):
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
        simulate(open_, high, low, close, state, cfg, res[c])
    return res


@njit(cache=True, parallel=True)
def sweep_states(open_, high, low, close, states, cfg):
    """Generic: one precomputed state row per combination (any strategy; memory grows with combinations)."""
    nc = states.shape[0]
    res = np.empty((nc, _NM))
    for c in prange(nc):
        simulate(open_, high, low, close, states[c], cfg, res[c])
    return res


# the fused kernels a strategy can declare (``Strategy.sweep_kernel``, see workbench.strategies.indicators):
# kernel(open, high, low, close, *tables, *index rows, *scalars, cfg)
FUSED = {
    "cross": sweep_sma_cross,  # one table (a line per period); two index rows (fast, slow)
    "channels": sweep_breakout,  # two tables (upper, lower); two index rows (entry, exit channel)
    "threshold": sweep_tsmom,  # one table; one index row; one scalar (threshold)
    "bands": sweep_bands,  # one table (z); one index row; scalars entry, exit
    "levels": sweep_levels,  # one table (oscillator); one index row; scalars lower, upper, exit
}
