"""A trading session at a glance: the price with the session's fills on it, and its equity.

Pure: takes frames (or the plain lists of ``Journal.export()`` / ``workbench journal export``), returns a plotly
figure, does no I/O. Times are epoch milliseconds (the journal's ``timestamp``), a ``time`` column, or the
frame's DatetimeIndex; they are shown in UTC. Buys are green triangles pointing up, sells red triangles pointing
down, each at its fill price and time; hover shows the amount, the price, the fee and the client order id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["trading_figure"]

_BUY, _SELL = "#26a69a", "#ef5350"


def _frame(obj: Any, what: str) -> pd.DataFrame:
    if obj is None:
        return pd.DataFrame()
    if isinstance(obj, pd.Series):
        return obj.rename(obj.name or "equity").to_frame()
    if isinstance(obj, pd.DataFrame):
        return obj
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        return pd.DataFrame(list(obj))
    raise TypeError(f"{what}: expected a DataFrame or a list of records, got {type(obj).__name__}")


def _times(df: pd.DataFrame, what: str) -> pd.DatetimeIndex:
    """UTC times of ``df``'s rows, from ``timestamp`` (ms), ``time`` or the index, tz-naive for plotly."""
    if "timestamp" in df.columns:
        t = pd.DatetimeIndex(pd.to_datetime(df["timestamp"].astype("int64"), unit="ms", utc=True))
    elif "time" in df.columns:
        t = pd.DatetimeIndex(pd.to_datetime(df["time"], utc=True))
    elif isinstance(df.index, pd.DatetimeIndex):
        t = df.index if df.index.tz is not None else df.index.tz_localize("UTC")
    else:
        raise ValueError(f"{what}: no times: give a 'timestamp' (ms) or 'time' column, or a DatetimeIndex")
    return t.tz_convert("UTC").tz_localize(None)


def _need(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what}: missing column(s) {', '.join(missing)} (have {', '.join(map(str, df.columns))})"
        )


def trading_figure(
    candles: pd.DataFrame | Mapping[str, pd.DataFrame],
    fills: pd.DataFrame | Sequence[Mapping[str, Any]] | None,
    equity: pd.DataFrame | pd.Series | Sequence[Mapping[str, Any]] | None,
    *,
    symbol: str | None = None,
    title: str | None = None,
) -> go.Figure:
    """Candlesticks with the fills as buy/sell markers (top) and the equity curve (bottom).

    ``candles``: an OHLC frame with a DatetimeIndex (or ``timestamp``/``time`` column), or ``{symbol: frame}``
    (``symbol`` picks one; default the first). ``fills``: rows with ``side`` (buy/sell), ``price``, ``amount``
    and a time; with a ``symbol`` column, only that symbol's fills are drawn. ``equity``: rows with ``equity`` and
    a time, or a Series. Empty fills or equity draw an empty panel (a session that has not traded yet).
    """
    if isinstance(candles, Mapping):
        if not candles:
            raise ValueError("candles: no symbols")
        symbol = symbol or next(iter(candles))
        if symbol not in candles:
            raise ValueError(f"candles: no symbol {symbol!r} (have {', '.join(candles)})")
        candles = candles[symbol]
    cdf = _frame(candles, "candles")
    _need(cdf, ["open", "high", "low", "close"], "candles")
    if cdf.empty:
        raise ValueError("candles: empty frame (nothing to draw the fills on)")
    fdf = _frame(fills, "fills")
    if not fdf.empty:
        _need(fdf, ["side", "price", "amount"], "fills")
        if symbol is not None and "symbol" in fdf.columns:
            fdf = fdf[fdf["symbol"] == symbol]
        bad = sorted(set(fdf["side"].astype(str)) - {"buy", "sell"})
        if bad:
            raise ValueError(f"fills: side must be buy or sell, got {', '.join(bad)}")
    edf = _frame(equity, "equity")
    if not edf.empty:
        _need(edf, ["equity"], "equity")

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.05, row_heights=[0.7, 0.3],
                        subplot_titles=(symbol or "price", "equity"))  # fmt: skip
    fig.add_trace(
        go.Candlestick(
            x=_times(cdf, "candles"),
            open=cdf["open"],
            high=cdf["high"],
            low=cdf["low"],
            close=cdf["close"],
            name="price",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    if not fdf.empty:
        ft = _times(fdf, "fills")
        for side, colour, marker in (("buy", _BUY, "triangle-up"), ("sell", _SELL, "triangle-down")):
            mask = (fdf["side"].astype(str) == side).to_numpy()
            sub = fdf[mask]
            hover = [
                f"{side} {a:.8g} @ {p:.8g}"
                + (f"<br>fee {fe:.6g} {fc}" if "fee" in sub.columns else "")
                + (f"<br>{cid}" if "client_order_id" in sub.columns else "")
                for a, p, fe, fc, cid in zip(
                    sub["amount"],
                    sub["price"],
                    sub["fee"] if "fee" in sub.columns else [None] * len(sub),
                    sub["fee_currency"] if "fee_currency" in sub.columns else [""] * len(sub),
                    sub["client_order_id"] if "client_order_id" in sub.columns else [""] * len(sub),
                    strict=True,
                )
            ]
            fig.add_trace(
                go.Scatter(
                    x=ft[mask],
                    y=sub["price"],
                    mode="markers",
                    name=f"{side} ({len(sub)})",
                    marker={
                        "symbol": marker,
                        "size": 11,
                        "color": colour,
                        "line": {"width": 1, "color": "#333"},
                    },
                    hovertext=hover,
                    hoverinfo="text+x",
                ),
                row=1,
                col=1,
            )
    if not edf.empty:
        et = _times(edf, "equity")
        order = et.argsort()
        fig.add_trace(
            go.Scatter(
                x=et[order],
                y=edf["equity"].to_numpy()[order],
                mode="lines",
                name="equity",
                line={"color": "#1f77b4"},
            ),
            row=2,
            col=1,
        )
    fig.update_layout(
        title=title,
        xaxis_rangeslider_visible=False,
        height=620,
        margin={"l": 60, "r": 20, "t": 60, "b": 30},
        legend={"orientation": "h", "y": 1.06, "x": 1, "xanchor": "right"},
    )
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    return fig
