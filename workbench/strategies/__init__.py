"""Strategies: one interface for backtests, sweeps and the live engine; built-ins found by name, the user's
own from files (``--strategy my_strategies.py:MyStrategy`` or by name from ``strategies.paths``)."""

from workbench.strategies.base import (
    Param,
    ParamError,
    Params,
    Strategy,
    get_strategy,
    register,
    strategy_names,
)
from workbench.strategies.loader import StrategyLoadError, load_strategy  # also installs the file finder

__all__ = [
    "Param",
    "ParamError",
    "Params",
    "Strategy",
    "StrategyLoadError",
    "get_strategy",
    "load_strategy",
    "register",
    "strategy_names",
]
