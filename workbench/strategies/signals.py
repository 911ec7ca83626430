"""Causal signal building blocks shared by the strategies and the fused sweep kernels (numba, cached)."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["cross_state", "hysteresis", "hysteresis_step"]


@njit(cache=True, inline="always")
def hysteresis_step(state: float, enter_long: bool, exit_long: bool, enter_short: bool, exit_short: bool) -> float:
    """One bar of a long/flat/short state machine. Exits are applied before entries, so an exit and an
    opposite entry on the same bar reverse the position; a fresh entry in the held direction is a no-op."""
    if state > 0 and exit_long:
        state = 0.0
    elif state < 0 and exit_short:
        state = 0.0
    if enter_long and not enter_short:
        state = 1.0
    elif enter_short and not enter_long:
        state = -1.0
    return state


@njit(cache=True)
def hysteresis(
    enter_long: np.ndarray, exit_long: np.ndarray, enter_short: np.ndarray, exit_short: np.ndarray, valid: np.ndarray
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


@njit(cache=True)
def cross_state(fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """+1 where fast > slow, -1 where fast < slow, the previous state where equal, NaN in warm-up."""
    n = fast.shape[0]
    out = np.full(n, np.nan)
    state = np.nan
    for t in range(n):
        f, s = fast[t], slow[t]
        if np.isnan(f) or np.isnan(s):
            out[t] = state
            continue
        if f > s:
            state = 1.0
        elif f < s:
            state = -1.0
        elif np.isnan(state):
            state = 0.0
        out[t] = state
    return out
