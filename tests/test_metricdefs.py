"""The metric registry: every metric the engine, the sweep kernels and the reports use is defined once."""

from __future__ import annotations

import ast
import inspect
import math
import sys

import numpy as np
import pandas as pd
import pytest

from workbench import metricdefs as MD
from workbench.backtest import kernels as K
from workbench.backtest.metrics import METRIC_KEYS, compute_metrics
from workbench.viz import report as R


def test_every_computed_and_swept_metric_is_registered() -> None:
    idx = pd.date_range("2024-01-01", periods=50, freq="h", tz="UTC")
    eq = pd.Series(np.linspace(100, 120, 50) + np.sin(np.arange(50)), index=idx)
    assert tuple(compute_metrics(eq)) == METRIC_KEYS == MD.METRIC_KEYS
    assert set(METRIC_KEYS) <= set(MD.METRICS) and set(K.METRICS) <= set(MD.METRICS)
    # the report's labels and groups are the registry's
    assert all(R.METRIC_LABELS[k] == MD.METRICS[k].label for k in MD.METRICS)
    assert {k for keys in R.METRIC_GROUPS.values() for k in keys} == set(MD.METRICS)


def test_an_unregistered_metric_is_refused() -> None:
    with pytest.raises(KeyError, match="sharpie"):
        MD.keys("sharpe", "sharpie")


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("total_return", -0.1492415363, "-14.92%"),
        ("max_drawdown_duration_days", 184.5416667, "184.5 days"),
        ("sharpe", 1.23456, "1.23"),
        ("psr", 0.98765, "0.988"),
        ("psr", 0.0, "< 1e-300"),
        ("expectancy", 12.3456, "12.35 USDT"),
        ("n_trades", 42.0, "42"),
        ("profit_factor", math.inf, "∞"),
        ("beta", None, "n/a"),
        ("beta", math.nan, "n/a"),
        ("sortino", "inf", "∞"),  # as the JSON files write it
        ("turnover", 3.5, "3.50× per year"),
    ],
)
def test_format(key: str, value: object, text: str) -> None:
    assert MD.format_metric(key, value, "USDT") == text


def test_registry_is_standard_library_only() -> None:
    tree = ast.parse(inspect.getsource(MD))
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= set(sys.stdlib_module_names) | {"__future__"}
