"""Plotly figures (and later ipywidgets panels) used by notebooks and dashboards, and self-contained HTML
reports of backtests and sweeps. Takes results and frames; does no I/O except writing the reports asked for."""

from workbench.viz.candles import candlestick
from workbench.viz.report import (
    benchmark_table,
    drawdowns_frame,
    equity_figure,
    metrics_table,
    monthly_returns,
    monthly_returns_figure,
    trades_figure,
    write_report,
)
from workbench.viz.sweep import sweep_heatmap, sweep_pivot, sweep_top_table, write_sweep_report
from workbench.viz.trading import trading_figure

__all__ = [
    "benchmark_table",
    "candlestick",
    "drawdowns_frame",
    "equity_figure",
    "metrics_table",
    "monthly_returns",
    "monthly_returns_figure",
    "sweep_heatmap",
    "sweep_pivot",
    "sweep_top_table",
    "trades_figure",
    "trading_figure",
    "write_report",
    "write_sweep_report",
]
