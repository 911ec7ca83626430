"""The fill and cost model: how a market order fills and what it costs, and when a stop triggers.

These few compiled functions are the only place where fill prices, fees, the cash limit and the stop rules are
written down. The backtest simulator (:mod:`workbench.sim.portfolio`), the sweep kernels
(:mod:`workbench.backtest.kernels`) and the trading engine's paper broker all call them, so a backtest, a sweep
and a paper session price the same order the same way. They are plain numba functions: callable from Python
(a few microseconds a call) and inlined into other compiled code.

Rules
-----
* **Market fills.** A buy fills at ``px × (1 + slippage)``, a sell at ``px × (1 − slippage)``; ``px`` is the
  reference price (a bar's open, or a triggered stop's price).
* **Fees.** ``fee_rate × |units × fill price|`` in quote currency, on every fill.
* **Cash limit.** A buy that would cost more than the cash (``units × price × (1 + fee_rate)``) fills
  partially, for ``cash / (price × (1 + fee_rate))`` units; with no cash, nothing. Sells are not limited
  (short sales credit the proceeds less fees).
* **Stops** (:func:`stop_trigger`), checked over a bar after the orders at its open: the reference is the
  position's entry price (its average fill price), or for a trailing stop the best price since entry
  (the highest high of a long, the lowest low of a short, of the bars *before* this one, starting at the
  entry price). A stop-loss sits at ``ref × (1 − sl)`` for a long (``ref × (1 + sl)`` for a short), a
  take-profit at ``entry × (1 + tp)`` (``entry × (1 − tp)``). A bar that opens through a level fills at the
  open (the gap); otherwise a level inside the bar's range fills at the level. When the stop-loss and the
  take-profit are both inside one bar, the stop-loss is assumed to come first (the bar's path is unknown;
  this is the conservative choice). A triggered stop is a market order: it pays slippage and the taker fee.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "EXIT_SIGNAL",
    "EXIT_STOP_LOSS",
    "EXIT_TAKE_PROFIT",
    "market_fill",
    "market_price",
    "stop_trigger",
]

EXIT_SIGNAL, EXIT_STOP_LOSS, EXIT_TAKE_PROFIT = 0, 1, 2
"""Why a fill happened: the strategy's order at the open, a stop-loss or a take-profit."""


@njit(cache=True, inline="always")
def market_price(px: float, units: float, slippage: float) -> float:
    """The fill price of a market order for ``units`` (positive buys, negative sells) at reference ``px``."""
    if units > 0.0:
        return px * (1.0 + slippage)
    if units < 0.0:
        return px * (1.0 - slippage)
    return px


@njit(cache=True, inline="always")
def market_fill(cash: float, units: float, px: float, fee_rate: float, slippage: float):
    """Fill a market order for ``units`` at reference price ``px`` against ``cash``.

    Returns ``(cash after, filled units (signed), fill price, fee)``: a buy larger than the cash is cut to what
    the cash pays for, fee included.
    """
    p = market_price(px, units, slippage)
    d = units
    if d > 0.0:
        if d * p * (1.0 + fee_rate) > cash:
            d = cash / (p * (1.0 + fee_rate)) if cash > 0.0 else 0.0
        fee = d * p * fee_rate
        cash -= d * p + fee
    elif d < 0.0:
        fee = -d * p * fee_rate
        cash += -d * p - fee
    else:
        fee = 0.0
    return cash, d, p, fee


@njit(cache=True, inline="always")
def stop_trigger(
    units: float,
    entry: float,
    extreme: float,
    o: float,
    h: float,
    lo: float,
    sl: float,
    tp: float,
    trailing: bool,
):
    """Whether a position of ``units`` is stopped out within a bar (open ``o``, high ``h``, low ``lo``).

    ``entry`` is the position's entry price, ``extreme`` the best price since entry for a trailing stop;
    ``sl``/``tp`` are fractions (NaN: none). Returns ``(reason, reference price)`` with reason
    :data:`EXIT_STOP_LOSS`, :data:`EXIT_TAKE_PROFIT` or -1 (no trigger); the reference price is the level, or
    the open when the bar opened through it. The fill price then follows from :func:`market_fill`.
    """
    if units == 0.0:
        return -1, np.nan
    ref = extreme if trailing else entry
    if units > 0.0:
        if sl == sl:  # not NaN
            level = ref * (1.0 - sl)
            if o <= level:
                return EXIT_STOP_LOSS, o
            if lo <= level:
                return EXIT_STOP_LOSS, level
        if tp == tp:
            level = entry * (1.0 + tp)
            if o >= level:
                return EXIT_TAKE_PROFIT, o
            if h >= level:
                return EXIT_TAKE_PROFIT, level
    else:
        if sl == sl:
            level = ref * (1.0 + sl)
            if o >= level:
                return EXIT_STOP_LOSS, o
            if h >= level:
                return EXIT_STOP_LOSS, level
        if tp == tp:
            level = entry * (1.0 - tp)
            if o <= level:
                return EXIT_TAKE_PROFIT, o
            if lo <= level:
                return EXIT_TAKE_PROFIT, level
    return -1, np.nan
