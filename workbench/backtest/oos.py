"""Backtests of model predictions, strictly on the out-of-sample bars where they exist."""

from __future__ import annotations

import pandas as pd

from workbench.backtest.benchmark import buy_and_hold_metrics as _bh_metrics
from workbench.backtest.engine import BacktestConfig, BacktestResult, run_backtest
from workbench.strategies.ml import MLStrategy

__all__ = ["backtest_predictions", "buy_and_hold_metrics"]


def backtest_predictions(
    candles: pd.DataFrame,
    predictions: pd.Series,
    config: BacktestConfig | None = None,
    *,
    upper: float = 0.55,
    lower: float = 0.45,
) -> BacktestResult:
    """Trade the ``ml`` strategy on ``predictions`` (out-of-sample probabilities, NaN elsewhere), from the
    first bar that has one. Bars without a prediction (gaps between folds, purged bars) are flat."""
    first = predictions.first_valid_index()
    if first is None:
        raise ValueError("no predictions to backtest")
    last = predictions.last_valid_index()
    data = candles[candles.index <= last]
    feats = predictions.reindex(data.index).to_frame("prediction")
    return run_backtest(data, MLStrategy(upper=upper, lower=lower), config, start=first, features=feats)


def buy_and_hold_metrics(candles: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, float]:
    """Metrics of holding the asset over the same bars (no costs): the baseline an ML strategy must beat
    (:func:`workbench.backtest.benchmark.buy_and_hold_metrics`, the benchmark of every backtest)."""
    return _bh_metrics(candles, start, end)
