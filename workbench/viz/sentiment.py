"""Sentiment beside price: a market's close (top) and its per-bar news sentiment (bottom) on one time axis.

Pure: takes the close series and the frame of :func:`workbench.features.sentiment.sentiment_series` (indexed by
bar-open time, ``score`` the mean P(bull) - P(bear) of the bar's items, ``count`` their number) and returns a
plotly figure; the Models page (``workbench.panels.models``) wraps it in a widget.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["sentiment_price_figure"]

BULL, BEAR = "#2ca02c", "#d62728"


def _labels(index: pd.Index) -> list[str]:
    return [str(x) for x in pd.DatetimeIndex(index).strftime("%Y-%m-%d %H:%M")]


def sentiment_price_figure(close: pd.Series, series: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Two rows on a shared time axis: the close; the mean sentiment score per bar (bars, green above zero,
    red below, in [-1, 1]) with the number of items per bar (markers, right axis). A bar without items has no
    score (a gap, not a zero). Times are the bars' open times, UTC."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        row_heights=[0.55, 0.45],
        specs=[[{}], [{"secondary_y": True}]],
    )
    fig.add_trace(
        go.Scatter(
            x=_labels(close.index), y=close.to_numpy(dtype=float), name="close", line={"color": "#444"}
        ),
        1,
        1,
    )
    score = series["score"].to_numpy(dtype=float)
    fig.add_trace(
        go.Bar(
            x=_labels(series.index),
            y=score,
            name="sentiment (mean score)",
            marker={"color": np.where(score >= 0, BULL, BEAR).tolist()},
        ),
        2,
        1,
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(
            x=_labels(series.index),
            y=series["count"].to_numpy(dtype=float),
            name="items",
            mode="markers",
            marker={"color": "#1f77b4", "size": 6, "symbol": "diamond"},
        ),
        2,
        1,
        secondary_y=True,
    )
    fig.update_yaxes(title_text="close", row=1, col=1)
    fig.update_yaxes(title_text="score", range=[-1.05, 1.05], row=2, col=1, secondary_y=False)
    top = float(series["count"].max()) if len(series) else 1.0
    fig.update_yaxes(
        title_text="items",
        range=[0, top * 1.1 + 0.5],
        dtick=max(1, math.ceil(top / 4)),  # whole items
        row=2,
        col=1,
        secondary_y=True,
        showgrid=False,
    )
    fig.update_xaxes(type="date", row=1, col=1)
    fig.update_xaxes(type="date", title_text="time (UTC)", row=2, col=1)
    fig.update_layout(
        height=520,
        margin={"l": 60, "r": 60, "t": 60 if title else 40, "b": 40},
        legend={"x": 0, "y": 1.08, "orientation": "h"},
        bargap=0.1,
        **({"title": {"text": title}} if title else {}),
    )
    return fig
