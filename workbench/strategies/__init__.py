"""Strategies: one interface for backtests, sweeps and the live engine; built-ins found by name."""

from workbench.strategies.base import (
    Param,
    ParamError,
    Params,
    Strategy,
    get_strategy,
    register,
    strategy_names,
)

__all__ = ["Param", "ParamError", "Params", "Strategy", "get_strategy", "register", "strategy_names"]
