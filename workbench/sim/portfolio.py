"""The portfolio simulator behind every backtest and sweep: one compiled bar step over all assets.

:func:`bar_step` is the whole of the execution model for one bar; :func:`simulate_portfolio` loops it over the
bars and records every fill and trade (``run_backtest``), and the sweep kernels loop the same function without
recording (:mod:`workbench.backtest.kernels`). It takes the *effective* targets (already shifted to their
execution bar, clipped to the direction and sized) and OHLC prices. The rules are those of
:mod:`workbench.sim.fills` plus, per bar ``t``:

1. **Orders at the open.** For each asset whose effective target changed, the order is ``units* − units`` with
   ``units* = target × V / open`` (fraction sizing; ``V = cash + Σ units × open`` at the unslipped opens of bar
   ``t``) or ``units* = target / open`` (notional sizing). Sells execute before buys (assets in column order
   within each group), all at the open through :func:`~workbench.sim.fills.market_fill`. Where ``units*`` is
   not a number (an open price missing from the data: NaN), the order waits for the next bar that has one.
2. **Stops over the rest of the bar**, the bar of an entry included (the whole bar follows a fill at its open),
   by :func:`~workbench.sim.fills.stop_trigger`. A stopped asset stays flat until its target changes again.
   Then a trailing stop's best price takes in the bar's high (long) or low (short).
3. **Marking.** Equity ``cash + Σ units × close``.

Trades are round trips (positions): a trade opens when an asset's units leave 0 (or flip sign) and closes when
they return to 0 (or flip). Its entry price is the average fill price of its entries, its exit price the
average of its exits, its fees every fee paid on it (a flipping fill's fee split by units), and its PnL the
realised PnL of its exits less those fees. A trade still open at the last bar is marked at the last close and
reported with status open.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from workbench.sim.fills import EXIT_SIGNAL, market_fill, stop_trigger

__all__ = [
    "FILL_FIELDS",
    "N_STATE",
    "TRADE_FIELDS",
    "bar_step",
    "bars_held",
    "new_state",
    "simulate_portfolio",
    "units_held",
]

FILL_FIELDS = ("idx", "col", "units", "price", "fee", "reason")
TRADE_FIELDS = (
    "col",
    "direction",  # +1 long, -1 short
    "entry_idx",
    "exit_idx",
    "size",  # largest absolute units held
    "entry_price",
    "exit_price",
    "fees",
    "pnl",
    "status",  # 1 closed, 0 open
    "exit_reason",  # fills.EXIT_*; -1 while open
)

# per-asset state: one row per asset of a float64 array (the last two columns are the bar step's scratch space:
# the order wanted at this bar's open and whether the target changed, so that a bar with orders allocates nothing)
(
    UNITS, PREV, STOPPED, OPEN, DIR, ENTRY_IDX, ENTRY, EXTREME, SIZE, EXIT_UNITS, EXIT_VALUE, FEES, REALISED,
    WANTED, CHANGED,
) = range(15)  # fmt: skip
N_STATE = 15


@njit(cache=True)
def new_state(k):
    """The state of ``k`` flat assets."""
    return np.zeros((k, N_STATE))


@njit(cache=True, inline="always")
def _record_fill(fills, nf, record, t, j, d, p, fee, reason):
    i = nf if record else 0
    fills[i, 0] = t
    fills[i, 1] = j
    fills[i, 2] = d
    fills[i, 3] = p
    fills[i, 4] = fee
    fills[i, 5] = reason
    return nf + 1 if record else nf


@njit(cache=True, inline="always")
def _open(s, t, units, p, fee):
    s[OPEN] = 1.0
    s[DIR] = 1.0 if units > 0.0 else -1.0
    s[ENTRY_IDX] = t
    s[ENTRY] = p
    s[EXTREME] = p
    s[SIZE] = abs(units)
    s[EXIT_UNITS] = 0.0
    s[EXIT_VALUE] = 0.0
    s[FEES] = fee
    s[REALISED] = 0.0


@njit(cache=True, inline="always")
def _write_trade(trades, nt, j, s, t, status, reason, pnl, exit_price):
    trades[nt, 0] = j
    trades[nt, 1] = s[DIR]
    trades[nt, 2] = s[ENTRY_IDX]
    trades[nt, 3] = t
    trades[nt, 4] = s[SIZE]
    trades[nt, 5] = s[ENTRY]
    trades[nt, 6] = exit_price
    trades[nt, 7] = s[FEES]
    trades[nt, 8] = pnl
    trades[nt, 9] = status
    trades[nt, 10] = reason
    return nt + 1


@njit(cache=True, inline="always")
def _book(s, trades, nt, j, t, d, p, fee, reason):
    """Apply a fill of ``d`` units at ``p`` to asset state ``s`` and its trade; a closed trade goes to
    ``trades[nt]``. Returns the new ``nt``."""
    old = s[UNITS]
    new = old + d
    if old != 0.0 and (new == 0.0 or (new > 0.0) != (old > 0.0)):
        # closes the open trade (and, on a flip, opens the next one with the rest of the fill)
        q = abs(old)
        close_fee = fee * (q / abs(d))
        s[REALISED] += (p - s[ENTRY]) * old
        s[FEES] += close_fee
        s[EXIT_UNITS] += q
        s[EXIT_VALUE] += q * p
        nt = _write_trade(
            trades, nt, j, s, t, 1.0, reason, s[REALISED] - s[FEES], s[EXIT_VALUE] / s[EXIT_UNITS]
        )
        s[OPEN] = 0.0
        if new != 0.0:
            _open(s, t, new, p, fee - close_fee)
    elif old == 0.0:
        _open(s, t, new, p, fee)
    elif abs(new) > abs(old):  # adds to the position: average entry price
        s[ENTRY] = (s[ENTRY] * abs(old) + p * abs(d)) / abs(new)
        s[FEES] += fee
        if abs(new) > s[SIZE]:
            s[SIZE] = abs(new)
    else:  # reduces it: realise the part sold
        q = abs(d)
        s[REALISED] += (p - s[ENTRY]) * (-d)
        s[FEES] += fee
        s[EXIT_UNITS] += q
        s[EXIT_VALUE] += q * p
    s[UNITS] = new
    return nt


@njit(cache=True)
def bar_step(
    t, o, h, lo, e, cash, st, notional, fee_rate, slippage, sl, tp, trailing, fills, nf, trades, nt, record
):
    """One bar: the orders at the open ``o`` (a row of prices) for the effective targets ``e``, then the stops
    over the bar (``h``, ``lo``). ``st`` is the per-asset state (:func:`new_state`), updated in place.

    With ``record``, fills are appended to ``fills`` at ``nf`` and closed trades to ``trades`` at ``nt``; without,
    closed trades of this bar are written from row 0 (at most two per asset: a flip and then a stop). Returns
    ``(cash, nf, nt)``.
    """
    k = o.shape[0]
    if not record:
        nt = 0
    any_change = False
    for j in range(k):
        x = e[j]
        if x != x:
            x = 0.0
        if x != st[j, PREV]:
            any_change = True
    if any_change:
        value = cash
        for j in range(k):
            value += st[j, UNITS] * o[j]
        for j in range(k):
            x = e[j]
            if x != x:
                x = 0.0
            st[j, CHANGED] = 0.0
            st[j, WANTED] = 0.0
            if x != st[j, PREV]:
                goal = x / o[j] if notional else x * value / o[j]
                if goal != goal:  # no open price to size or fill at (a gap in the data): try at the next bar
                    continue
                st[j, CHANGED] = 1.0
                st[j, PREV] = x
                st[j, STOPPED] = 0.0
                st[j, WANTED] = goal - st[j, UNITS]
        for phase in range(2):  # sells, then buys
            for j in range(k):
                d = st[j, WANTED]
                if st[j, CHANGED] == 0.0 or (phase == 0 and not d < 0.0) or (phase == 1 and not d > 0.0):
                    continue
                cash, d, p, fee = market_fill(cash, d, o[j], fee_rate, slippage)
                if d == 0.0:
                    continue
                nf = _record_fill(fills, nf, record, t, j, d, p, fee, EXIT_SIGNAL)
                nt = _book(st[j], trades, nt, j, t, d, p, fee, EXIT_SIGNAL)
    if sl == sl or tp == tp:
        for j in range(k):
            u = st[j, UNITS]
            if u == 0.0:
                continue
            reason, px = stop_trigger(u, st[j, ENTRY], st[j, EXTREME], o[j], h[j], lo[j], sl, tp, trailing)
            if reason >= 0:
                cash, d, p, fee = market_fill(cash, -u, px, fee_rate, slippage)
                if d != 0.0:
                    nf = _record_fill(fills, nf, record, t, j, d, p, fee, reason)
                    nt = _book(st[j], trades, nt, j, t, d, p, fee, reason)
                    if st[j, UNITS] == 0.0:
                        st[j, STOPPED] = 1.0
            elif trailing:
                if u > 0.0 and h[j] > st[j, EXTREME]:
                    st[j, EXTREME] = h[j]
                elif u < 0.0 and lo[j] < st[j, EXTREME]:
                    st[j, EXTREME] = lo[j]
    return cash, nf, nt


@njit(cache=True)
def _grown(a, extra):
    """``a`` with at least ``extra`` more rows (doubled): the fill and trade records never run past their end,
    whatever the capacity asked for (NaN prices can make a stop fill on every bar)."""
    out = np.empty((2 * a.shape[0] + extra, a.shape[1]))
    out[: a.shape[0]] = a
    return out


@njit(cache=True)
def simulate_portfolio(o, h, lo, c, eff, notional, fee_rate, slippage, init_cash, sl, tp, trailing, capacity):
    """Simulate one portfolio. Arrays are ``(n_bars, n_assets)`` float64; ``eff`` holds the effective targets
    (NaN = 0). ``sl``/``tp``: fractions or NaN. ``capacity``: the expected number of fills (the records grow
    past it if needed).

    Returns ``(equity[n], fills[m, 6], trades[q, 11])`` with the columns of :data:`FILL_FIELDS` and
    :data:`TRADE_FIELDS`; the units held per bar are :func:`units_held` of the fills (built when asked for).
    """
    n, k = c.shape
    equity = np.empty(n)
    fills = np.empty((capacity, 6))
    trades = np.empty((capacity + k, 11))
    nf = 0
    nt = 0
    cash = init_cash
    st = new_state(k)
    stops = sl == sl or tp == tp
    for t in range(n):
        # a bar where no target changes and (without stops, or while flat) nothing can fill: bar_step would do
        # nothing, so only mark it (the same rules, one call less per bar)
        idle = True
        for j in range(k):
            x = eff[t, j]
            if x != x:
                x = 0.0
            if x != st[j, PREV] or (stops and st[j, UNITS] != 0.0):
                idle = False
                break
        if idle:
            v = cash
            for j in range(k):
                v += st[j, UNITS] * c[t, j]
            equity[t] = v
            continue
        if nf + 2 * k > fills.shape[0]:  # a bar fills each asset at most twice (its order, then a stop)
            fills = _grown(fills, 2 * k)
        if nt + 3 * k > trades.shape[0]:  # and room for the trades still open at the end
            trades = _grown(trades, 2 * k)
        cash, nf, nt = bar_step(
            t, o[t], h[t], lo[t], eff[t], cash, st, notional, fee_rate, slippage, sl, tp, trailing,
            fills, nf, trades, nt, True,
        )  # fmt: skip
        v = cash
        for j in range(k):
            v += st[j, UNITS] * c[t, j]
        equity[t] = v
    for j in range(k):  # trades still open: marked at the last close
        s = st[j]
        if s[OPEN] == 1.0:
            u, last = s[UNITS], c[n - 1, j]
            exit_price = (s[EXIT_VALUE] + abs(u) * last) / (s[EXIT_UNITS] + abs(u))
            pnl = s[REALISED] + (last - s[ENTRY]) * u - s[FEES]
            nt = _write_trade(trades, nt, j, s, n - 1, 0.0, -1.0, pnl, exit_price)
    return equity, fills[:nf].copy(), trades[:nt].copy()


@njit(cache=True)
def bars_held(fills, n, k):
    """How many of the ``n`` bars end with a position in any of the ``k`` assets (NaN units count as flat):
    ``np.any(np.abs(units_held(fills, n, k)) > 0, axis=1).sum()`` from the fills alone, without the array."""
    u = np.zeros(k)
    live = 0  # assets with a position
    count = 0
    since = 0  # the first bar not counted yet
    i, m = 0, fills.shape[0]
    while i < m:
        t = int(fills[i, 0])
        if live > 0:
            count += t - since
        since = t
        while i < m and fills[i, 0] == t:
            j = int(fills[i, 1])
            was = abs(u[j]) > 0.0
            u[j] = u[j] + fills[i, 2]
            now = abs(u[j]) > 0.0
            live += int(now) - int(was)
            i += 1
    if live > 0:
        count += n - since
    return count


@njit(cache=True)
def units_held(fills, n, k):
    """The units of each of ``k`` assets held at the close of each of ``n`` bars, from the fills of
    :func:`simulate_portfolio` (in time order): each fill's units added in the order the simulator booked them,
    so the sums are the simulator's to the bit."""
    held = np.empty((n, k))
    u = np.zeros(k)
    i, m = 0, fills.shape[0]
    for t in range(n):
        while i < m and fills[i, 0] == t:
            j = int(fills[i, 1])
            u[j] = u[j] + fills[i, 2]
            i += 1
        for j in range(k):
            held[t, j] = u[j]
    return held
