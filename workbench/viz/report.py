"""Backtest report: plotly figures of a :class:`~workbench.backtest.engine.BacktestResult` and one self-contained
HTML file that gathers them.

Takes a result (duck-typed: ``strategy``, ``params``, ``config``, ``symbols``, ``timeframe``, ``exchange``,
``equity``, ``trades``, ``metrics``; ``positions`` and ``candles`` where present, for buy and hold and the
exposure) and frames; does no I/O except writing the HTML file it is asked to write. The tear-sheet numbers
(buy and hold, alpha and beta, rolling Sharpe and volatility, drawdown episodes, exposure, distributions) are
defined and computed in :mod:`workbench.viz.tearsheet`; a strategy (duck-typed: ``indicators()``,
``indicator_frame()``) puts its declared indicators on the price chart (viz does not import the strategies).

The HTML report works offline: plotly.js is inlined **once** in the page head, and every figure is a
``full_html=False`` fragment that only calls ``Plotly.newPlot``. User strings (title, strategy, parameters,
symbols, table cells) are escaped with :func:`html.escape`; plotly escapes ``<``/``>`` inside its JSON.

File size: plotly.js is about 4.8 MB. The price chart shows at most ``max_bars`` candles in all (20,000 by
default, split evenly between the symbols): longer candle series are **resampled for display only** to bars
``k`` times the base spacing, ``k = ceil(n / budget)`` (open first, high max, low min, close last, anchored on the
UNIX epoch), and indicator lines take the last value in each coarse bar; trade markers keep their exact times and
prices. The equity and drawdown curves are drawn at full resolution up to ``max_points`` (50,000) points; beyond
that each curve keeps the minimum and the maximum of every bucket of bars (extremes, and so the maximum drawdown,
stay visible); the exposure keeps the extremes of ``max_points / 2`` buckets and the rolling lines (smooth)
every ``k``-th bar up to ``max_points / 5``. Reports stay under about 16 MB whatever the length (7 MB on the 1h
sample, 5,980 bars; 15.5 MB for two symbols of 71,769 5m bars with 5,324 trades).
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from workbench.metricdefs import METRICS, format_metric, label, quote_currency
from workbench.metricdefs import groups as metric_groups
from workbench.viz import tearsheet as ts

__all__ = [
    "METRIC_GROUPS",
    "METRIC_LABELS",
    "BacktestResultLike",
    "benchmark_table",
    "drawdowns_frame",
    "equity_figure",
    "format_metric",
    "metrics_table",
    "monthly_returns",
    "monthly_returns_figure",
    "trades_figure",
    "write_report",
]


class BacktestResultLike(Protocol):
    """What the report reads of a ``workbench.backtest.engine.BacktestResult`` (viz does not import the backtest
    layer: the import-linter layers put it below backtest)."""

    strategy: str
    params: dict[str, Any]
    config: Any
    symbols: list[str]
    timeframe: str | None
    equity: pd.Series
    trades: pd.DataFrame
    metrics: dict[str, float]
    exchange: str | None

    @property
    def start(self) -> pd.Timestamp: ...

    @property
    def end(self) -> pd.Timestamp: ...


GREEN, RED = "#26a69a", "#ef5350"
_LONG, _SHORT = "#1f5fbf", "#ff7f0e"  # entries: long blue, short orange
_WIN, _LOSS = "#1b9e4b", "#d62728"  # exits: winning green, losing red
_PALETTE = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

METRIC_LABELS: dict[str, str] = {k: d.label for k, d in METRICS.items()}
"""Display label of each metric key, from the registry :mod:`workbench.metricdefs` (unknown keys are shown as
their key, capitalised)."""

METRIC_GROUPS: dict[str, tuple[str, ...]] = metric_groups()
"""How the report groups the metrics, from the registry (other keys go to 'Other')."""


# ------------------------------------------------------------------------------------------ formatting


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


VAR_LEVEL = 0.95
"""The VaR/CVaR confidence level of ``workbench.backtest.metrics.compute_metrics`` (its default), named in the
labels unless a result says otherwise (a ``var_level`` metric or attribute)."""

_VAR_KEYS = {"var_hist", "cvar_hist", "var_param", "cvar_param"}


def _label(key: str, var_level: float | None = None) -> str:
    text = label(key)
    if key in _VAR_KEYS and var_level is not None:
        what, _, rest = text.partition(", ")
        text = f"{what} {var_level * 100:.4g}%, {rest}"
    return text


def _var_level(result: Any) -> float:
    for v in (
        getattr(result, "var_level", None),
        dict(getattr(result, "metrics", {}) or {}).get("var_level"),
    ):
        f = _float(v)
        if f is not None and 0.0 < f < 1.0:
            return f
    return VAR_LEVEL


_quote_currency = quote_currency


def metrics_table(result: BacktestResultLike, var_level: float | None = None) -> pd.DataFrame:
    """Every metric of ``result.metrics``, formatted: a DataFrame indexed by metric key with columns
    ``group``, ``metric`` (label), ``value`` (formatted text) and ``raw`` (the float). The VaR/CVaR labels
    name their confidence level: ``var_level``, else the result's, else :data:`VAR_LEVEL`."""
    metrics = dict(result.metrics)
    metrics.pop("var_level", None)
    level = _var_level(result) if var_level is None else float(var_level)
    currency = _quote_currency(list(result.symbols))
    order = [k for keys in METRIC_GROUPS.values() for k in keys if k in metrics]
    order += [k for k in metrics if k not in order]
    group_of = {k: g for g, keys in METRIC_GROUPS.items() for k in keys}
    bench = getattr(result, "benchmark", None)  # what beta is measured against (the backtest names it)
    rows = [
        {
            "group": group_of.get(k, "Other"),
            "metric": _label(k, level) if k != "beta" or not bench else f"Beta to {bench}",
            "value": format_metric(k, metrics[k], currency),
            "raw": _float(metrics[k]),
        }
        for k in order
    ]
    return pd.DataFrame(rows, index=pd.Index(order, name="key"), columns=["group", "metric", "value", "raw"])


# ------------------------------------------------------------------------------------------ time helpers


def _utc_index(idx: pd.Index) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(idx)
    return idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")


def _utc(obj: Any) -> Any:
    """A copy of a Series/DataFrame with a UTC DatetimeIndex."""
    out = obj.copy(deep=False)
    out.index = _utc_index(obj.index)
    return out


def _xs(times: Any) -> list[str]:
    """UTC times as compact strings for plotly date axes ('2024-01-01 13:00', seconds only where needed)."""
    idx = _utc_index(pd.DatetimeIndex(times))
    if len(idx) == 0:
        return []
    fmt = "%Y-%m-%d %H:%M:%S" if (idx.second != 0).any() else "%Y-%m-%d %H:%M"
    return list(idx.strftime(fmt))


def _fmt_time(t: Any) -> str:
    if t is None or pd.isna(t):
        return ""
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%d %H:%M:%S" if ts.second else "%Y-%m-%d %H:%M")


def _spacing(idx: pd.DatetimeIndex) -> pd.Timedelta | None:
    if len(idx) < 2:
        return None
    d = np.diff(idx.asi8)
    med = np.median(d[d > 0]) if (d > 0).any() else 0
    return pd.Timedelta(int(med), unit=idx.unit) if med > 0 else None  # asi8 counts in the index's unit


def _td_label(td: pd.Timedelta) -> str:
    s = int(td.total_seconds())
    for unit, n in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if s % n == 0 and s >= n:
            return f"{s // n}{unit}"
    return f"{s}s"


def _timeframe_label(result: Any) -> str:
    tf = getattr(result, "timeframe", None)
    if tf:
        return str(tf)
    step = _spacing(_utc_index(result.equity.index))
    return f"{_td_label(step)} (from the bar spacing)" if step is not None else "n/a"


def _decimate(s: pd.Series, max_points: int | None) -> pd.Series:
    """At most about ``max_points`` points: the minimum and maximum of each bucket of bars, plus both ends."""
    n = len(s)
    if not max_points or n <= max_points:
        return s
    k = math.ceil(n / max(1, max_points // 2))
    nb = math.ceil(n / k)
    v = np.full(nb * k, np.nan)
    v[:n] = s.to_numpy(dtype="float64")
    v = v.reshape(nb, k)
    lo = np.where(np.isnan(v), np.inf, v).argmin(axis=1)
    hi = np.where(np.isnan(v), -np.inf, v).argmax(axis=1)
    base = np.arange(nb) * k
    keep = np.unique(np.concatenate([base + lo, base + hi, [0, n - 1]]))
    return s.iloc[keep[keep < n]]


# ------------------------------------------------------------------------------------------ equity


def _drawdown(result: Any) -> pd.Series:
    """Drawdown (fraction <= 0) against the running peak, the initial cash counting as the first peak (as in
    the ``max_drawdown`` metric, which prepends the initial cash to the curve)."""
    eq = result.equity.astype("float64")
    peak = eq.cummax()
    init = _float(getattr(getattr(result, "config", None), "init_cash", None))
    if init is not None and math.isfinite(init):
        peak = peak.clip(lower=init)
    return eq / peak - 1.0


def equity_figure(
    result: BacktestResultLike,
    *,
    max_points: int | None = 50_000,
    benchmark: pd.Series | bool | None = True,
    log_y: bool = False,
    top_drawdowns: int = 5,
) -> go.Figure:
    """Equity curve (top) and drawdown in % (bottom), sharing the time axis (UTC).

    ``benchmark``: an equity curve drawn beside the strategy's (dotted grey); ``True`` (the default) draws buy
    and hold of the result's own candles when it has them (:func:`workbench.viz.tearsheet.benchmark_equity`),
    ``None``/``False`` draws none. The ``top_drawdowns`` deepest drawdowns are shaded. ``log_y`` starts the
    equity axis in log scale; buttons on the chart switch between linear and log.
    """
    if benchmark is True:
        benchmark = ts.result_benchmark(result)
    elif benchmark is False:
        benchmark = None
    eq = _utc(result.equity.astype("float64"))
    dd = _utc(_drawdown(result) * 100.0)
    eq_s, dd_s = _decimate(eq, max_points), _decimate(dd, max_points)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=[0.7, 0.3])
    fig.add_trace(
        go.Scatter(
            x=_xs(eq_s.index),
            y=eq_s.to_numpy(),
            mode="lines",
            name="strategy",
            line={"color": "#1f77b4", "width": 1.5},
            hovertemplate="strategy %{y:,.2f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    init = _float(getattr(getattr(result, "config", None), "init_cash", None))
    if init is not None and math.isfinite(init):
        fig.add_hline(y=init, line={"color": "#999", "width": 1, "dash": "dot"}, row=1, col=1)
    fig.add_trace(
        go.Scatter(
            x=_xs(dd_s.index),
            y=dd_s.to_numpy(),
            mode="lines",
            name="drawdown",
            fill="tozeroy",
            line={"color": RED, "width": 1},
            fillcolor="rgba(239,83,80,0.3)",
            hovertemplate="drawdown %{y:.2f}%<extra></extra>",
            showlegend=False,
        ),
        row=2,
        col=1,
    )
    if benchmark is not None:
        b = _decimate(_utc(benchmark.astype("float64")).reindex(eq.index), max_points)
        fig.add_trace(
            go.Scatter(
                x=_xs(b.index),
                y=b.to_numpy(),
                mode="lines",
                name=str(benchmark.name or "benchmark"),
                line={"color": "#7f7f7f", "width": 1.2, "dash": "dot"},
                hovertemplate=f"{html.escape(str(benchmark.name or 'benchmark'))} %{{y:,.2f}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    worst = ts.drawdown_table(result.equity, init, top=top_drawdowns) if top_drawdowns else None
    if worst is not None:
        for _, d in worst.iterrows():
            end = d["recovery"] if d["recovered"] else eq.index[-1]
            fig.add_vrect(
                x0=_fmt_time(max(d["peak"], eq.index[0])),
                x1=_fmt_time(end),
                fillcolor="rgba(239,83,80,0.08)",
                line_width=0,
                layer="below",
                row=1,
                col=1,
            )
    note = (
        "" if len(eq_s) == len(eq) else f" (display: min/max of buckets, {len(eq_s):,} of {len(eq):,} points)"
    )
    n_dd = 0 if worst is None else len(worst)
    shaded = (
        f"; the {n_dd} deepest drawdowns shaded" if n_dd > 1 else ("; the drawdown shaded" if n_dd else "")
    )
    fig.update_layout(
        title={"text": f"Equity and drawdown{note}{shaded}", "y": 0.985, "yanchor": "top"},
        height=600,
        showlegend=True,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "xanchor": "right", "x": 1},
        hovermode="x unified",
        margin={"l": 60, "r": 20, "t": 100, "b": 30},
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "x": 0.0,
                "y": 1.01,
                "xanchor": "left",
                "yanchor": "bottom",
                "pad": {"t": 0, "b": 0},
                "showactive": True,
                "active": 1 if log_y else 0,
                "buttons": [
                    {"label": "linear", "method": "relayout", "args": [{"yaxis.type": "linear"}]},
                    {"label": "log", "method": "relayout", "args": [{"yaxis.type": "log"}]},
                ],
            }
        ],
    )
    fig.update_yaxes(title_text="equity", type="log" if log_y else "linear", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", ticksuffix="%", row=2, col=1)
    fig.update_xaxes(type="date")
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    return fig


# ------------------------------------------------------------------------------------------ monthly returns


def monthly_returns(equity: pd.Series, initial: float | None = None) -> pd.DataFrame:
    """Compounded monthly returns, a year × month (1..12) frame of fractions (NaN where no data).

    A month's return is its last equity value over the previous month's last value, minus 1; the first month
    starts from ``initial`` (e.g. the initial cash) if given, else from the first equity value. Months are
    calendar months in UTC; the first and last ones may be partial. The product of ``1 + r`` over all months is
    the total growth of the curve (from ``initial``).
    """
    eq = _utc(equity.astype("float64").dropna())
    if eq.empty:
        return pd.DataFrame(columns=pd.Index(range(1, 13), name="month"), index=pd.Index([], name="year"))
    last = eq.groupby([eq.index.year, eq.index.month]).last()
    base0 = eq.iloc[0] if initial is None else float(initial)
    prev = np.concatenate([[base0], last.to_numpy()[:-1]])
    ret = pd.Series(last.to_numpy() / prev - 1.0, index=last.index)
    ret.index = ret.index.set_names(["year", "month"])
    table = ret.unstack("month").reindex(columns=range(1, 13))
    table.columns.name = "month"
    return table


def monthly_returns_figure(result: BacktestResultLike) -> go.Figure:
    """Heatmap year × month of the compounded monthly returns (%, annotated), from the equity curve; the first
    month starts from the initial cash. Year labels carry the year's compounded return."""
    init = _float(getattr(getattr(result, "config", None), "init_cash", None))
    table = monthly_returns(result.equity, init)
    z = table.to_numpy(dtype="float64") * 100.0
    yearly = (1.0 + table).prod(axis=1, min_count=1) - 1.0
    ylabels = [f"{y} ({yr * 100:+.1f}%)" for y, yr in zip(table.index, yearly, strict=True)]
    text = [["" if np.isnan(v) else f"{v:.1f}%" for v in row] for row in z]
    finite = z[np.isfinite(z)]
    lim = float(np.abs(finite).max()) if finite.size else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(_MONTHS),
            y=ylabels,
            text=text,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmid=0.0,
            zmin=-lim,
            zmax=lim,
            xgap=2,
            ygap=2,
            colorbar={"title": {"text": "%"}, "ticksuffix": "%"},
            hovertemplate="%{y} %{x}: %{z:.2f}%<extra></extra>",
        )
    )
    fig.update_layout(
        title="Monthly returns (compounded, UTC calendar months)",
        height=max(220, 90 + 45 * len(table)),
        margin={"l": 110, "r": 20, "t": 50, "b": 30},
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", side="top")
    return fig


# ------------------------------------------------------------------------------------------ trades


def _candles_by_symbol(
    result: Any, candles: Mapping[str, pd.DataFrame] | pd.DataFrame
) -> dict[str, pd.DataFrame]:
    symbols = [str(s) for s in result.symbols]
    if isinstance(candles, pd.DataFrame):
        name = candles.attrs.get("symbol")
        name = str(name) if name is not None else (symbols[0] if symbols else "price")
        if len(symbols) == 1 and name not in symbols:
            name = symbols[0]
        return {name: candles}
    frames = {str(k): v for k, v in candles.items()}
    ordered = {s: frames[s] for s in symbols if s in frames}
    ordered.update({k: v for k, v in frames.items() if k not in ordered})
    return ordered


def _indicators_by_symbol(indicators: Any, symbols: list[str]) -> dict[str, dict[str, pd.Series]]:
    """``{name: Series}`` goes on the first panel, except keys ``'SYMBOL:name'`` that name another symbol;
    ``{symbol: {name: Series}}`` is taken as is."""
    out: dict[str, dict[str, pd.Series]] = {s: {} for s in symbols}
    if not indicators or not symbols:
        return out
    for key, val in indicators.items():
        key = str(key)
        if isinstance(val, Mapping):
            if key in out:
                out[key].update({str(k): v for k, v in val.items()})
            continue
        sym, _, rest = key.partition(":")
        if rest and sym in out:
            out[sym][rest] = val
        else:
            out[symbols[0]][key] = val
    return out


def _downsample(df: pd.DataFrame, budget: int) -> tuple[pd.DataFrame, pd.Timedelta | None]:
    """Resample candles to bars ``k = ceil(n / budget)`` times the base spacing if there are more than ``budget``."""
    n = len(df)
    step = _spacing(df.index)
    if n <= budget or step is None:
        return df, None
    rule = step * math.ceil(n / budget)
    agg = {"open": "first", "high": "max", "low": "min", "close": "last"}
    out = df[list(agg)].resample(rule, origin="epoch", label="left", closed="left").agg(agg).dropna()
    return out, rule


def strategy_indicators(
    strategy: Any, candles: Mapping[str, pd.DataFrame] | pd.DataFrame, symbols: Sequence[str] = ()
) -> tuple[dict[str, dict[str, pd.Series]], set[str]]:
    """A strategy's declared indicators on ``candles`` (``strategy.indicator_frame``, duck-typed: viz does not
    import the strategies), as ``{symbol: {column: Series}}`` and the set of columns drawn in a panel of their
    own (declared ``overlay=False``: RSI, a z-score); the others go on the price chart. A single-asset
    strategy's indicators are computed per symbol; a multi-asset one's (pairs) once, on the first symbol's
    panel."""
    if isinstance(candles, pd.DataFrame):
        name = symbols[0] if symbols else str(candles.attrs.get("symbol", "price"))
        frames = {str(name): candles}
    else:
        frames = {str(k): v for k, v in candles.items()}
    specs = dict(strategy.indicators()) if hasattr(strategy, "indicators") else {}
    if not specs or not frames:
        return {}, set()

    def own_panel(col: str) -> bool:
        spec = specs.get(col.split(".", 1)[0])
        return not bool(getattr(spec, "overlay", False))

    out: dict[str, dict[str, pd.Series]] = {}
    if int(getattr(strategy, "assets", 1) or 1) > 1:
        first = next(iter(frames))
        frame = strategy.indicator_frame(frames)
        out[first] = {str(c): frame[c] for c in frame.columns}
    else:
        for sym, df in frames.items():
            frame = strategy.indicator_frame(df)
            out[sym] = {str(c): frame[c] for c in frame.columns}
    panel = {c for d in out.values() for c in d if own_panel(c)}
    return out, panel


def trades_figure(
    result: BacktestResultLike,
    candles: Mapping[str, pd.DataFrame] | pd.DataFrame,
    indicators: Mapping[str, Any] | None = None,
    *,
    strategy: Any = None,
    start: Any = None,
    end: Any = None,
    max_bars: int = 20_000,
) -> go.Figure:
    """Candlesticks per symbol over the window both the backtest and ``candles`` cover (narrowed to
    ``[start, end]`` when given), with the trades' markers and indicator lines.

    Markers: a triangle at each entry (up and blue for a long, down and orange for a short) and, at each exit,
    a triangle pointing the other way, green for a winning trade and red for a losing or break-even one (open
    trades have no exit marker); hover shows the trade's size, PnL, return and exit reason. Only the entries
    and exits inside the drawn window are marked (a chart of the last 1,500 candles shows their trades only).

    Indicator lines: ``strategy`` (anything with ``indicators()`` and ``indicator_frame(candles)``, e.g. a
    :class:`workbench.strategies.Strategy`) draws its declared indicators, computed on all of ``candles``
    (so they warm up on the history before the window): overlays on the price, the others (RSI, a z-score)
    in a panel below it (``start=`` draws the end of a long run with indicators warmed up on the candles
    before it). ``indicators`` adds lines on the price: ``{name: Series}`` on the first symbol's
    panel (a key ``'SYMBOL:name'`` puts it on that symbol's), or ``{symbol: {name: Series}}``. Candles beyond
    ``max_bars`` in all are resampled for display (see the module docstring); markers stay exact.
    """
    frames = _candles_by_symbol(result, candles)
    if not frames:
        raise ValueError("no candles given for the price chart")
    syms = list(frames)
    inds = _indicators_by_symbol(indicators, syms)
    own: dict[str, dict[str, pd.Series]] = {s: {} for s in syms}
    if strategy is not None:
        declared, panel_cols = strategy_indicators(strategy, frames, syms)
        for sym, cols in declared.items():
            for name, ser in cols.items():
                (own if name in panel_cols else inds).setdefault(sym, {})[name] = ser
    first, last = _utc_index(pd.DatetimeIndex([result.start, result.end]))
    start = first if start is None else max(first, _utc_index(pd.DatetimeIndex([start]))[0])
    end = last if end is None else min(last, _utc_index(pd.DatetimeIndex([end]))[0])
    budget = max(500, max_bars // len(syms))
    tr = result.trades
    titles, panels, heights = [], [], []
    for sym in syms:
        df = _utc(frames[sym]).loc[start:end]
        shown, rule = _downsample(df, budget)
        panels.append((sym, df, shown, rule))
        step = _spacing(df.index)
        if rule is not None:
            titles.append(
                f"{sym}: {_td_label(rule)} bars for display ({len(df):,} bars resampled to {len(shown):,})"
            )
        else:
            titles.append(f"{sym}" + (f" ({_td_label(step)} bars)" if step is not None else ""))
        heights.append(3.0)
        if own.get(sym):
            titles.append(f"{sym}: {', '.join(own[sym])}")
            heights.append(1.0)
    nonempty = [df.index for _, df, _, _ in panels if len(df)]
    if not nonempty:
        raise ValueError(
            f"the candles given ({', '.join(syms)}) have no bar in the backtest's range "
            f"{_fmt_time(start)} – {_fmt_time(end)} UTC"
        )
    w0 = min(i[0] for i in nonempty)
    w1 = max(i[-1] for i in nonempty)
    fig = make_subplots(
        rows=len(heights),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06 if len(heights) > 1 else 0.02,
        subplot_titles=titles,
        row_heights=heights,
    )
    legend_seen: set[str] = set()

    def once(name: str) -> bool:
        new = name not in legend_seen
        legend_seen.add(name)
        return new

    def line(name: str, s: Any, color: str, rule: Any, row: int) -> None:
        s = _utc(pd.Series(s, dtype="float64")).loc[start:end]
        if rule is not None:
            s = s.resample(rule, origin="epoch", label="left", closed="left").last()
        fig.add_trace(
            go.Scatter(
                x=_xs(s.index),
                y=s.to_numpy(),
                mode="lines",
                name=str(name),
                line={"color": color, "width": 1.2},
                legendgroup=f"ind:{name}",
                showlegend=once(f"ind:{name}"),
                hovertemplate=f"{html.escape(str(name))} %{{y:,.4~f}}<extra></extra>",
            ),
            row=row,
            col=1,
        )

    row = 0
    for sym, df, shown, rule in panels:
        row += 1
        fig.add_trace(
            go.Candlestick(
                x=_xs(shown.index),
                open=shown["open"].to_numpy(),
                high=shown["high"].to_numpy(),
                low=shown["low"].to_numpy(),
                close=shown["close"].to_numpy(),
                name=sym,
                increasing={"line": {"color": GREEN}},
                decreasing={"line": {"color": RED}},
                showlegend=False,
            ),
            row=row,
            col=1,
        )
        for i, (name, s) in enumerate(inds.get(sym, {}).items()):
            line(name, s, _PALETTE[i % len(_PALETTE)], rule, row)
        if tr is not None and len(tr) and len(df):
            _add_trade_markers(
                fig, tr[tr["symbol"].astype(str) == sym], sym, df.index[0], df.index[-1], row, once
            )
        if own.get(sym):
            row += 1
            for i, (name, s) in enumerate(own[sym].items()):
                line(name, s, _PALETTE[(i + 3) % len(_PALETTE)], rule, row)
    fig.update_xaxes(rangeslider_visible=False, type="date", range=[_fmt_time(w0), _fmt_time(w1)])
    fig.update_xaxes(title_text="time (UTC)", row=len(heights), col=1)
    fig.update_layout(
        title="Trades on the price chart",
        height=120 + sum(146 * h for h in heights),
        hovermode="closest",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
        margin={"l": 60, "r": 20, "t": 90, "b": 30},
    )
    return fig


def _add_trade_markers(
    fig: go.Figure, t: pd.DataFrame, sym: str, w0: pd.Timestamp, w1: pd.Timestamp, row: int, once: Any
) -> None:
    """Entry markers (by direction) and exit markers (by win or loss) of the trades ``t`` inside [w0, w1]."""
    if t.empty:
        return
    entry_t = pd.to_datetime(t["entry_time"], utc=True)
    exit_t = pd.to_datetime(t["exit_time"], utc=True)
    status = t["status"].astype(str).to_numpy() if "status" in t else np.array(["closed"] * len(t))
    reason = (
        t["exit_reason"].astype(str).str.replace("_", " ").to_numpy()
        if "exit_reason" in t
        else np.where(status == "open", "open", "")
    )
    custom = np.column_stack(
        [
            t["size"].to_numpy(dtype="float64"),
            t["pnl"].to_numpy(dtype="float64"),
            t["return"].to_numpy(dtype="float64") * 100.0,
            reason.astype(object),
            t["direction"].astype(str).to_numpy().astype(object),
        ]
    )
    hover = (
        "<b>{what}</b> %{{x}}<br>price %{{y:,.4~f}}<br>size %{{customdata[0]:.6~g}}"
        "<br>PnL %{{customdata[1]:,.2f}}<br>return %{{customdata[2]:.2f}}%<br>exit: %{{customdata[3]}}"
        "<extra>{sym} %{{customdata[4]}}</extra>"
    )
    in_entry = ((entry_t >= w0) & (entry_t <= w1)).to_numpy()
    direction = t["direction"].astype(str).to_numpy()
    for d, color, up in (("long", _LONG, True), ("short", _SHORT, False)):
        sel = in_entry & (direction == d)
        if not sel.any():
            continue
        name = f"{d} entry"
        fig.add_trace(
            go.Scatter(
                x=_xs(entry_t[sel]),
                y=t["entry_price"].to_numpy(dtype="float64")[sel],
                mode="markers",
                name=name,
                legendgroup=name,
                showlegend=once(name),
                marker={
                    "symbol": "triangle-up" if up else "triangle-down",
                    "size": 11,
                    "color": color,
                    "line": {"color": "#222", "width": 0.8},
                },
                customdata=custom[sel],
                hovertemplate=hover.format(what=name, sym=html.escape(sym)),
            ),
            row=row,
            col=1,
        )
    in_exit = ((exit_t >= w0) & (exit_t <= w1)).to_numpy() & (status != "open")
    pnl = t["pnl"].to_numpy(dtype="float64")
    for what, won, color in (("winning exit", True, _WIN), ("losing exit", False, _LOSS)):
        sel = in_exit & ((pnl > 0) if won else ~(pnl > 0))
        if not sel.any():
            continue
        symbols = np.where(direction[sel] == "long", "triangle-down", "triangle-up")
        fig.add_trace(
            go.Scatter(
                x=_xs(exit_t[sel]),
                y=t["exit_price"].to_numpy(dtype="float64")[sel],
                mode="markers",
                name=what,
                legendgroup=what,
                showlegend=once(what),
                marker={
                    "symbol": list(symbols),
                    "size": 10,
                    "color": color,
                    "line": {"color": "#222", "width": 0.8},
                },
                customdata=custom[sel],
                hovertemplate=hover.format(what=what, sym=html.escape(sym)),
            ),
            row=row,
            col=1,
        )


# ------------------------------------------------------------------------------------------ HTML


_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
  background:#f4f6f8;color:#1f2328;font-size:14px}
main{max-width:1320px;margin:0 auto;padding:20px}
header h1{font-size:1.7em;margin:8px 0 4px}
header .sub{color:#57606a;margin:0 0 8px}
section{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:14px 18px;margin:14px 0;overflow-x:auto}
section h2{font-size:1.15em;margin:0 0 10px}
table{border-collapse:collapse;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}
th{background:#f6f8fa;font-weight:600}
th:first-child,td:first-child{text-align:left}
table.kv td:first-child{color:#57606a}
table.kv td{text-align:left;white-space:normal}
.groups{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.groups h3{font-size:.95em;margin:0 0 4px;color:#57606a}
.pos{color:#1b7f3b}.neg{color:#c62828}
.note{color:#57606a;font-size:12px;margin:6px 0}
code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _sign_class(v: Any) -> str:
    f = _float(v)
    if f is None or not math.isfinite(f) or f == 0:
        return ""
    return ' class="pos"' if f > 0 else ' class="neg"'


def _kv_table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _table(columns: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]], cls: str = "") -> str:
    """An HTML table; each cell is (text, extra attributes); text is escaped here."""
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td{a}>{_e(t)}</td>" for t, a in r) + "</tr>" for r in rows)
    c = f' class="{_e(cls)}"' if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(fig: go.Figure) -> str:
    """A ``<div>`` fragment of a figure that expects plotly.js on the page (``include_plotlyjs=False``)."""
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, config=_PLOTLY_CONFIG)


def page_html(title: str, sections: Sequence[str], *, subtitle: str = "") -> str:
    """A complete offline page: inline CSS and plotly.js inlined once in the head, then ``sections`` (HTML
    fragments, already escaped). ``title``/``subtitle`` are plain text and escaped here."""
    from plotly.offline import get_plotlyjs

    sub = f'<p class="sub">{_e(subtitle)}</p>' if subtitle else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n"
        "<script type=\"text/javascript\">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n'
        "</head>\n<body>\n<main>\n"
        f"<header><h1>{_e(title)}</h1>{sub}</header>\n"
        + "\n".join(sections)
        + "\n</main>\n</body>\n</html>\n"
    )


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _section(id_: str, heading: str, body: str) -> str:
    return f'<section id="{_e(id_)}"><h2>{_e(heading)}</h2>\n{body}\n</section>'


def _config_rows(config: Any) -> list[tuple[str, str]]:
    g = lambda k, d=None: getattr(config, k, d)  # noqa: E731
    rows: list[tuple[str, str]] = []
    if g("init_cash") is not None:
        rows.append(("Initial cash", f"{float(g('init_cash')):,.2f}"))
    if g("fees") is not None:
        rows.append(("Fees", f"{float(g('fees')) * 100:.4g}% of notional per fill"))
    if g("slippage") is not None:
        rows.append(("Slippage", f"{float(g('slippage')) * 100:.4g}% of the open price"))
    if g("direction") is not None:
        rows.append(("Direction", str(g("direction"))))
    if g("size_type") is not None:
        size = float(g("size", 1.0))
        what = (
            f"{size:g} × equity (target fraction)"
            if g("size_type") == "fraction"
            else f"{size:,.2f} quote per asset"
        )
        rows.append(("Sizing", f"{g('size_type')}: {what}"))
    stops = []
    if g("sl_stop") is not None:
        stops.append(f"stop loss {float(g('sl_stop')) * 100:.4g}%" + (" (trailing)" if g("trailing") else ""))
    if g("tp_stop") is not None:
        stops.append(f"take profit {float(g('tp_stop')) * 100:.4g}%")
    rows.append(("Stops", ", ".join(stops) or "none"))
    return rows


def _params_text(params: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (params or {}).items()) or "defaults"


def _metrics_html(table: pd.DataFrame) -> str:
    parts = []
    for group, sub in table.groupby("group", sort=False):
        rows = "".join(
            f"<tr><td>{_e(r.metric)}</td><td{_sign_class(r.raw) if k in _SIGNED else ''}>{_e(r.value)}</td></tr>"
            for k, r in sub.iterrows()
        )
        parts.append(f'<div><h3>{_e(group)}</h3><table class="metrics">{rows}</table></div>')
    return f'<div class="groups">{"".join(parts)}</div>'


_SIGNED = {"total_return", "annual_return", "sharpe", "sortino", "calmar", "expectancy"}


def _price(v: Any) -> str:
    f = _float(v)
    if f is None or not math.isfinite(f):
        return "" if f is None or math.isnan(f) else str(f)
    return f"{f:,.2f}" if abs(f) >= 100 else f"{f:,.6g}"


def trades_html(trades: pd.DataFrame, max_rows: int = 500) -> str:
    """The trades as an HTML table, the first ``max_rows`` rows, with a note when there are more."""
    n = 0 if trades is None else len(trades)
    if n == 0:
        return '<p class="note">No trades.</p>'
    cols = [
        ("#", None),
        ("symbol", "symbol"),
        ("direction", "direction"),
        ("entry (UTC)", "entry_time"),
        ("exit (UTC)", "exit_time"),
        ("size", "size"),
        ("entry price", "entry_price"),
        ("exit price", "exit_price"),
        ("fees", "fees"),
        ("PnL", "pnl"),
        ("return", "return"),
        ("status", "status"),
        ("exit", "exit_reason"),
    ]
    rows = []
    for i, (_, t) in enumerate(trades.head(max_rows).iterrows(), start=1):
        cells = []
        for _, c in cols:
            v = t.get(c) if c else i
            if c in ("entry_time", "exit_time"):
                cells.append((_fmt_time(v), ""))
            elif c == "size":
                f = _float(v)
                cells.append((f"{f:.6g}" if f is not None else "", ""))
            elif c in ("entry_price", "exit_price"):
                cells.append((_price(v), ""))
            elif c in ("fees", "pnl"):
                f = _float(v)
                cells.append((f"{f:,.2f}" if f is not None else "", _sign_class(v) if c == "pnl" else ""))
            elif c == "return":
                f = _float(v)
                cells.append((f"{f * 100:.2f}%" if f is not None else "", _sign_class(v)))
            elif c == "exit_reason":
                cells.append(("" if v is None or pd.isna(v) else str(v).replace("_", " "), ""))
            else:
                cells.append(("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v), ""))
        rows.append(cells)
    note = (
        f'<p class="note">Showing the first {max_rows:,} of {n:,} trades.</p>'
        if n > max_rows
        else f'<p class="note">{n:,} trades.</p>'
    )
    return note + _table([c for c, _ in cols], rows, cls="trades")


def benchmark_rows(result: BacktestResultLike, benchmark: pd.Series) -> list[tuple[str, str, str]]:
    """The strategy against ``benchmark`` (an equity curve on the result's bars) as (label, value, sign)
    rows: returns of both, excess return, alpha, beta, correlation, R², information ratio; the numbers of
    :func:`workbench.viz.tearsheet.alpha_beta`."""
    init = _float(getattr(getattr(result, "config", None), "init_cash", None))
    st = ts.alpha_beta(result.equity, benchmark, init)
    name = str(benchmark.name or "benchmark")
    total = _float(dict(result.metrics).get("total_return"))
    return [
        ("Strategy total return", format_metric("total_return", total), str(total)),
        (f"{name.capitalize()} total return", format_metric("total_return", st["benchmark_return"]), ""),
        ("Excess return", format_metric("total_return", st["excess_return"]), str(st["excess_return"])),
        (
            "Alpha (annualised, α × bars per year)",
            format_metric("total_return", st["alpha"]),
            str(st["alpha"]),
        ),
        (f"Beta to {name}", format_metric("beta", st["beta"]), ""),
        ("Correlation", format_metric("beta", st["correlation"]), ""),
        ("R²", format_metric("beta", st["r2"]), ""),
        ("Information ratio", format_metric("beta", st["information_ratio"]), str(st["information_ratio"])),
    ]


def benchmark_table(result: BacktestResultLike, benchmark: pd.Series | None = None) -> pd.DataFrame:
    """:func:`benchmark_rows` as a DataFrame (columns ``metric`` and ``value``), against ``benchmark`` or, by
    default, buy and hold of the result's own candles."""
    if benchmark is None:
        benchmark = ts.result_benchmark(result)
    if benchmark is None:
        raise ValueError("no benchmark: the result carries no candles; pass benchmark= (an equity curve)")
    rows = [(k, v) for k, v, _ in benchmark_rows(result, benchmark)]
    return pd.DataFrame(rows, columns=["metric", "value"])


def _benchmark_html(result: BacktestResultLike, benchmark: pd.Series, symbols: Sequence[str]) -> str:
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td{_sign_class(sign) if sign else ''}>{_e(v)}</td></tr>"
        for k, v, sign in benchmark_rows(result, benchmark)
    )
    what = (
        f"Buy and hold of {', '.join(symbols)}"
        + (" in equal parts" if len(symbols) > 1 else "")
        + ": the initial cash invested at the first bar's open, no fees, held to the end. Alpha and beta from"
        " the OLS fit of the strategy's per-bar returns on buy and hold's."
    )
    return f'<p class="note">{_e(what)}</p><table class="metrics">{rows}</table>'


def drawdowns_frame(equity: pd.Series, init_cash: float | None, top: int = 5) -> pd.DataFrame:
    """The ``top`` deepest drawdowns (:func:`workbench.viz.tearsheet.drawdown_table`) formatted for people
    (times in UTC, depth in %, duration in days), ranked 1..; what the report's table shows."""
    t = ts.drawdown_table(equity, init_cash, top=top)
    return pd.DataFrame(
        {
            "peak (UTC)": [_fmt_time(v) for v in t["peak"]],
            "trough (UTC)": [_fmt_time(v) for v in t["trough"]],
            "recovery (UTC)": [
                _fmt_time(v) if ok else "not recovered"
                for v, ok in zip(t["recovery"], t["recovered"], strict=True)
            ],
            "depth": [f"{v * 100:,.2f}%" for v in t["depth"]],
            "duration (days)": [
                f"{d:,.1f}" + ("" if ok else " (ongoing)")
                for d, ok in zip(t["days"], t["recovered"], strict=True)
            ],
        },
        index=pd.RangeIndex(1, len(t) + 1, name="#"),
    )


def drawdowns_html(equity: pd.Series, init_cash: float | None, top: int = 5) -> str:
    """:func:`drawdowns_frame` as an HTML table."""
    t = drawdowns_frame(equity, init_cash, top=top)
    if t.empty:
        return '<p class="note">No drawdown: the equity never fell below its running peak.</p>'
    rows = [
        [(str(i), "")] + [(str(v), ' class="neg"' if c == "depth" else "") for c, v in r.items()]
        for i, r in t.iterrows()
    ]
    note = (
        f'<p class="note">The {len(t)} deepest of the equity\'s drawdowns (a peak, the lowest point under it, '
        "and the first bar back at the peak); the initial cash counts as the first peak.</p>"
    )
    return note + _table(["#", *t.columns], rows, cls="drawdowns")


def write_report(
    result: BacktestResultLike,
    path: str | Path,
    candles: Mapping[str, pd.DataFrame] | pd.DataFrame | None = None,
    indicators: Mapping[str, Any] | None = None,
    title: str | None = None,
    *,
    strategy: Any = None,
    benchmark: pd.Series | bool | None = True,
    log_scale: bool = False,
    rolling_window: int | None = None,
    var_level: float | None = None,
    max_bars: int = 20_000,
    max_points: int | None = 50_000,
    max_trades: int = 500,
) -> Path:
    """Write one self-contained, offline HTML report of ``result`` to ``path`` (atomically) and return it.

    Sections: summary (strategy, parameters, symbols, exchange, timeframe, data range, configuration), metrics
    (the VaR labels name ``var_level``), the strategy against buy and hold (alpha, beta), equity and drawdown
    with buy and hold beside it (``log_scale`` starts the equity axis in log scale), the top-5 drawdowns,
    rolling Sharpe and volatility (``rolling_window`` bars, 30 days of bars by default), exposure over time,
    trades on the price chart with ``strategy``'s declared indicators and ``indicators`` (only with
    ``candles``), distributions of daily returns and trade PnL, monthly returns, and the trades list (the first
    ``max_trades`` rows). ``benchmark``: ``True`` = buy and hold of the result's own candles
    (``result.candles``; else of ``candles``), a Series = that equity curve, ``None``/``False`` = none. See the
    module docstring for the size limits and :mod:`workbench.viz.tearsheet` for the definitions.
    """
    symbols = [str(s) for s in result.symbols]
    if title is None:
        title = f"{result.strategy} on {', '.join(symbols)}" if symbols else str(result.strategy)
    trades = result.trades
    n_trades = 0 if trades is None else len(trades)
    n_open = 0 if trades is None or "status" not in trades else int((trades["status"] == "open").sum())
    rng = f"{_fmt_time(result.start)} – {_fmt_time(result.end)} UTC"
    init = _float(getattr(getattr(result, "config", None), "init_cash", None))
    if benchmark is True:
        benchmark = ts.result_benchmark(result)
        if benchmark is None and candles is not None and init is not None:
            frames = _candles_by_symbol(result, candles)
            if set(symbols) <= set(frames):
                idx = _utc_index(result.equity.index)
                bench = ts.benchmark_equity({s: _utc(frames[s]) for s in symbols}, idx, init)
                benchmark = None if bench is None else bench.set_axis(result.equity.index)
    elif benchmark is False:
        benchmark = None
    summary = [
        ("Strategy", str(result.strategy)),
        ("Parameters", _params_text(result.params)),
        ("Symbols", ", ".join(symbols) or "n/a"),
        ("Exchange", str(getattr(result, "exchange", None) or "n/a")),
        ("Timeframe", _timeframe_label(result)),
        ("Data range", rng),
        ("Bars", f"{len(result.equity):,}"),
        ("Trades", f"{n_trades - n_open:,} closed" + (f", {n_open:,} open" if n_open else "")),
        ("Benchmark (beta)", str(getattr(result, "benchmark", None) or "n/a")),
        *_config_rows(getattr(result, "config", None)),
    ]
    level = _var_level(result) if var_level is None else float(var_level)
    mt = metrics_table(result, level)
    head = [("total_return", "Total return"), ("sharpe", "Sharpe"), ("max_drawdown", "Max drawdown")]
    subtitle = " · ".join(
        [f"{_params_text(result.params)}", rng]
        + [f"{lbl} {mt.loc[k, 'value']}" for k, lbl in head if k in mt.index]
    )
    beta = _float(mt.loc["beta", "raw"]) if "beta" in mt.index else None
    if benchmark is not None and (beta is None or not math.isfinite(beta)):
        mt = mt.drop(index="beta", errors="ignore")  # the benchmark section gives it, against buy and hold
    sections = [
        _section("summary", "Summary", _kv_table(summary)),
        _section("metrics", "Metrics", _metrics_html(mt)),
    ]
    if benchmark is not None:
        sections.append(
            _section("benchmark", "Against buy and hold", _benchmark_html(result, benchmark, symbols))
        )
    efig = equity_figure(result, max_points=max_points, benchmark=benchmark, log_y=log_scale)
    sections += [
        _section("equity", "Equity and drawdown", figure_html(efig)),
        _section("drawdowns", "Worst drawdowns", drawdowns_html(result.equity, init, top=5)),
        _section(
            "rolling",
            "Rolling Sharpe and volatility",
            figure_html(
                ts.rolling_figure(
                    result,
                    benchmark,
                    window=rolling_window,
                    xs=_xs,
                    max_points=max_points and max(1_000, max_points // 5),  # smooth lines
                )
            ),
        ),
    ]
    ex = ts.exposure(result)
    sections.append(
        _section(
            "exposure",
            "Exposure over time",
            figure_html(ts.exposure_figure(_decimate_frame(ex, max_points and max_points // 2), xs=_xs))
            if ex is not None
            else '<p class="note">The result carries no positions and candles to value them.</p>',
        )
    )
    if candles is not None:
        fig = trades_figure(result, candles, indicators, strategy=strategy, max_bars=max_bars)
        sections.append(_section("price", "Trades on the price chart", figure_html(fig)))
    else:
        sections.append(
            _section("price", "Trades on the price chart", '<p class="note">No candles were given.</p>')
        )
    sections.append(
        _section("distributions", "Distributions", figure_html(ts.distribution_figure(result, level)))
    )
    sections.append(_section("monthly", "Monthly returns", figure_html(monthly_returns_figure(result))))
    sections.append(_section("trades-list", "Trades", trades_html(trades, max_trades)))
    return write_atomic(path, page_html(title, sections, subtitle=subtitle))


def _decimate_frame(df: pd.DataFrame, max_points: int | None) -> pd.DataFrame:
    """Rows of ``df`` kept by :func:`_decimate` of any of its columns (extremes of each stay)."""
    if not max_points or len(df) <= max_points:
        return df
    pos = pd.Series(np.arange(len(df)), index=df.index)
    keep = set()
    for c in df.columns:
        keep |= set(pos[_decimate(df[c].fillna(0.0), max_points // len(df.columns)).index].tolist())
    return df.iloc[sorted(keep)]
