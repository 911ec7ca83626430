"""Figures of the live dashboards: candles with indicators and volume, the order book's depth, the risk limits'
usage, a sparkline, equity with its drawdown.

Pure: each takes plain data (frames, lists of ``[price, amount]`` levels, mappings) and returns a plotly figure;
no I/O, no widgets. The panels (:mod:`workbench.panels`) wrap them in ``go.FigureWidget`` and update their traces
in place. Times are shown in UTC (tz-naive in the figure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "candles_figure",
    "depth_curves",
    "depth_figure",
    "equity_figure",
    "limit_usage_figure",
    "sparkline_figure",
    "usage_colour",
]

_BUY, _SELL = "#26a69a", "#ef5350"
_MARGIN = {"l": 50, "r": 20, "t": 40, "b": 30}


def _naive_utc(index: pd.Index) -> pd.DatetimeIndex:
    """Naive UTC times at microsecond precision: a FigureWidget sends ``datetime64[ns]`` arrays to the browser
    as integers (numpy's ``tolist`` of nanoseconds), and the date axis becomes a count of nanoseconds."""
    t = pd.DatetimeIndex(index)
    t = t.tz_convert("UTC").tz_localize(None) if t.tz is not None else t
    return t.as_unit("us") if t.unit == "ns" else t


def candles_figure(
    candles: pd.DataFrame,
    indicators: Mapping[str, pd.Series] | None = None,
    *,
    title: str | None = None,
    height: int = 520,
) -> go.Figure:
    """Candlesticks (trace 0) with indicator lines overlaid (traces 1..n, in ``indicators`` order) and the volume
    as bars below (the last trace). ``candles``: OHLCV columns and a DatetimeIndex; an empty frame draws empty
    traces (a session that has no closed candle yet), which a panel fills in later."""
    missing = [c for c in ("open", "high", "low", "close", "volume") if c not in candles.columns]
    if missing:
        raise ValueError(f"candles: missing column(s) {', '.join(missing)}")
    x = _naive_utc(candles.index)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.75, 0.25])
    fig.add_trace(
        go.Candlestick(x=x, open=candles["open"], high=candles["high"], low=candles["low"],
                       close=candles["close"], name="price", showlegend=False),
        row=1, col=1,
    )  # fmt: skip
    for name, series in (indicators or {}).items():
        s = series.reindex(candles.index)
        fig.add_trace(go.Scatter(x=x, y=s.to_numpy(), mode="lines", name=name), row=1, col=1)
    up = (candles["close"] >= candles["open"]).to_numpy()
    fig.add_trace(
        go.Bar(x=x, y=candles["volume"], name="volume", marker_color=np.where(up, _BUY, _SELL).tolist(),
               showlegend=False),
        row=2, col=1,
    )  # fmt: skip
    fig.update_layout(title=title, height=height, margin=_MARGIN, xaxis_rangeslider_visible=False,
                      legend={"orientation": "h", "y": 1.04, "x": 1, "xanchor": "right"})  # fmt: skip
    fig.update_yaxes(title_text="volume", row=2, col=1)
    return fig


def depth_curves(
    bids: Sequence[Sequence[float]], asks: Sequence[Sequence[float]]
) -> tuple[tuple[list[float], list[float]], tuple[list[float], list[float]]]:
    """The cumulative depth of each side: ``((bid prices, cumulative amounts), (ask prices, ...))``; bids from
    the best (highest) price down, asks from the best (lowest) up. Levels with a non-positive amount are left out."""
    b = sorted(((float(p), float(a)) for p, a, *_ in bids if float(a) > 0), key=lambda x: -x[0])
    a = sorted(((float(p), float(q)) for p, q, *_ in asks if float(q) > 0), key=lambda x: x[0])
    return (
        ([p for p, _ in b], np.cumsum([q for _, q in b]).tolist()),
        ([p for p, _ in a], np.cumsum([q for _, q in a]).tolist()),
    )


def depth_figure(
    bids: Sequence[Sequence[float]],
    asks: Sequence[Sequence[float]],
    *,
    title: str | None = "depth",
    height: int = 300,
) -> go.Figure:
    """The depth chart: cumulative bid amount (trace 0, green, stepped down from the best bid) and ask amount
    (trace 1, red, stepped up from the best ask) against the price."""
    (bp, bq), (ap, aq) = depth_curves(bids, asks)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=bp, y=bq, mode="lines", line={"shape": "hv", "color": _BUY}, fill="tozeroy",
                             name="bids"))  # fmt: skip
    fig.add_trace(go.Scatter(x=ap, y=aq, mode="lines", line={"shape": "hv", "color": _SELL}, fill="tozeroy",
                             name="asks"))  # fmt: skip
    fig.update_layout(title=title, height=height, margin=_MARGIN, xaxis_title="price",
                      yaxis_title="cumulative amount", showlegend=False)  # fmt: skip
    # prices in full with thousands separators (the default "63.8661k" hides the ticks a book lives in)
    fig.update_xaxes(exponentformat="none", separatethousands=True)
    return fig


def usage_colour(fraction: float | None) -> str:
    """Green below 60 % of a limit, amber up to 85 %, red above (grey when unknown or switched off)."""
    if fraction is None or not np.isfinite(fraction):
        return "#9e9e9e"
    if fraction < 0.6:
        return "#43a047"
    if fraction < 0.85:
        return "#fb8c00"
    return "#e53935"


def limit_usage_figure(
    usage: Sequence[Mapping[str, Any]], *, title: str | None = "limit usage", height: int | None = None
) -> go.Figure:
    """Horizontal bars, one per limit: ``usage`` rows with ``label``, ``fraction`` (value / limit; 1.0 is the
    limit; None when unknown) and ``text`` (the numbers in words). Bars are capped at 1.2 so that a breach shows
    beyond the limit line without squashing the rest."""
    labels = [str(u["label"]) for u in usage]
    fracs = [u.get("fraction") for u in usage]
    shown = [0.0 if f is None or not np.isfinite(f) else min(float(f), 1.2) for f in fracs]
    fig = go.Figure(
        go.Bar(
            x=shown,
            y=labels,
            orientation="h",
            marker_color=[usage_colour(f) for f in fracs],
            text=[str(u.get("text", "")) for u in usage],
            textposition="auto",
            hoverinfo="text+y",
        )
    )
    fig.add_vline(x=1.0, line_dash="dash", line_color="#555")
    fig.update_layout(title=title, height=height or max(160, 40 * len(labels) + 80), margin=_MARGIN,
                      xaxis={"range": [0, 1.2], "tickformat": ".0%"}, yaxis={"autorange": "reversed"})  # fmt: skip
    return fig


def sparkline_figure(values: Sequence[float], *, width: int = 160, height: int = 40) -> go.Figure:
    """A tiny line without axes (green if the last value is at or above the first, else red)."""
    vals = [float(v) for v in values]
    colour = _BUY if not vals or vals[-1] >= vals[0] else _SELL
    fig = go.Figure(go.Scatter(y=vals, mode="lines", line={"color": colour, "width": 1.5}, hoverinfo="skip"))
    fig.update_layout(width=width, height=height, margin={"l": 0, "r": 0, "t": 0, "b": 0}, showlegend=False,
                      xaxis={"visible": False}, yaxis={"visible": False},
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")  # fmt: skip
    return fig


def equity_figure(equity: pd.Series, *, title: str | None = "equity", height: int = 420) -> go.Figure:
    """The equity curve (trace 0) above its drawdown from the running peak, in % (trace 1). ``equity``: a
    Series with a DatetimeIndex; empty draws empty traces."""
    e = equity.astype(float)
    x = _naive_utc(e.index)
    dd = (e / e.cummax() - 1.0) if len(e) else e
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.05, row_heights=[0.7, 0.3])
    fig.add_trace(go.Scatter(x=x, y=e.to_numpy(), mode="lines", name="equity", line={"color": "#1f77b4"}),
                  row=1, col=1)  # fmt: skip
    fig.add_trace(go.Scatter(x=x, y=dd.to_numpy(), mode="lines", name="drawdown", fill="tozeroy",
                             line={"color": _SELL}), row=2, col=1)  # fmt: skip
    fig.update_layout(title=title, height=height, margin=_MARGIN, showlegend=False)
    fig.update_yaxes(tickformat=".1%", row=2, col=1, title_text="drawdown")
    return fig
