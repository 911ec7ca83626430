"""Backtests: the vectorbt adapter, costs, metrics, sweeps and reports."""
