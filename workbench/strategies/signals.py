"""Causal signal building blocks shared by the strategies and the fused sweep kernels (numba, cached)."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["cross_state", "cross_step", "hysteresis", "hysteresis_step"]


@njit(cache=True, inline="always")
def hysteresis_step(
    state: float, enter_long: bool, exit_long: bool, enter_short: bool, exit_short: bool
) -> float:
    """One bar of a long/flat/short state machine. Exits are applied before entries, so an exit and an
    opposite entry on the same bar reverse the position; a fresh entry in the held direction is a no-op."""
    if (state > 0 and exit_long) or (state < 0 and exit_short):
        state = 0.0
    if enter_long and not enter_short:
        state = 1.0
    elif enter_short and not enter_long:
        state = -1.0
    return state


@njit(cache=True)
def hysteresis(
    enter_long: np.ndarray,
    exit_long: np.ndarray,
    enter_short: np.ndarray,
    exit_short: np.ndarray,
    valid: np.ndarray,
) -> np.ndarray:
    """State per bar (1, 0, -1; NaN before ``valid`` first holds) from entry/exit conditions."""
    n = enter_long.shape[0]
    out = np.full(n, np.nan)
    state = 0.0
    started = False
    for t in range(n):
        if not valid[t]:
            if started:
                out[t] = state
            continue
        started = True
        state = hysteresis_step(state, enter_long[t], exit_long[t], enter_short[t], exit_short[t])
        out[t] = state
    return out


@njit(cache=True, inline="always")
def cross_step(state: float, fast: float, slow: float) -> float:
    """One bar of a cross: +1 when fast > slow, -1 when below, unchanged when equal or undefined (NaN)."""
    if np.isnan(fast) or np.isnan(slow):
        return state
    if fast > slow:
        return 1.0
    if fast < slow:
        return -1.0
    return 0.0 if np.isnan(state) else state


@njit(cache=True)
def cross_state(fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """+1 where fast > slow, -1 where fast < slow, the previous state where equal, NaN in warm-up."""
    n = fast.shape[0]
    out = np.empty(n)
    state = np.nan
    for t in range(n):
        state = cross_step(state, fast[t], slow[t])
        out[t] = state
    return out
