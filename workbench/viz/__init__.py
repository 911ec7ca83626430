"""Plotly figures (and later ipywidgets panels) used by notebooks and dashboards. Takes frames, does no I/O."""

from workbench.viz.candles import candlestick

__all__ = ["candlestick"]
