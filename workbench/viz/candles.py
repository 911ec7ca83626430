"""Candlestick chart with volume, for Candles frames (UTC DatetimeIndex, float64 OHLCV)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["candlestick"]


def candlestick(candles: pd.DataFrame, title: str | None = None, *, volume: bool = True) -> go.Figure:
    """A plotly candlestick (and volume) figure. Times are shown in UTC, as stored."""
    if title is None:
        a = candles.attrs
        title = " ".join(str(a[k]) for k in ("exchange", "symbol", "timeframe") if k in a) or None
    x = candles.index.tz_convert("UTC").tz_localize(None) if candles.index.tz is not None else candles.index
    rows = 2 if volume else 1
    fig = make_subplots(
        rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.75, 0.25][:rows]
    )
    fig.add_trace(
        go.Candlestick(
            x=x,
            open=candles["open"],
            high=candles["high"],
            low=candles["low"],
            close=candles["close"],
            name="price",
        ),
        row=1,
        col=1,
    )
    if volume:
        up = candles["close"] >= candles["open"]
        fig.add_trace(
            go.Bar(
                x=x,
                y=candles["volume"],
                name="volume",
                marker_color=["#26a69a" if u else "#ef5350" for u in up],
            ),
            row=2,
            col=1,
        )
    fig.update_layout(
        title=title,
        xaxis_rangeslider_visible=False,
        showlegend=False,
        height=520,
        margin={"l": 50, "r": 20, "t": 50, "b": 30},
        xaxis_title=None,
    )
    fig.update_xaxes(title_text="time (UTC)", row=rows, col=1)
    return fig
