"""Parameter-sweep figures and a self-contained HTML sweep report, from a
:class:`~workbench.backtest.sweep.SweepResult` (duck-typed: ``strategy``, ``table``, ``metric``,
``n_combinations``, ``n_valid``, ``seconds``, ``engine``, ``best``). No I/O except the HTML file asked for.

The table has the parameter columns first, then the metric columns (``SWEEP_METRICS``). Same embedding rules as
:mod:`workbench.viz.report`: plotly.js inlined once, figures as fragments, user strings escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.metricdefs import METRICS
from workbench.viz.report import (
    _e,
    _float,
    _section,
    _sign_class,
    _table,
    figure_html,
    format_metric,
    page_html,
    write_atomic,
)

__all__ = [
    "SWEEP_METRICS",
    "SweepResultLike",
    "param_columns",
    "sweep_heatmap",
    "sweep_line",
    "sweep_pivot",
    "sweep_top_table",
    "write_sweep_report",
]

SWEEP_METRICS = ("total_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "exposure", "final_equity")
"""The metric columns of a sweep table (``workbench.backtest.kernels.METRICS``)."""


class SweepResultLike(Protocol):
    """What the sweep report reads of a ``workbench.backtest.sweep.SweepResult`` (viz does not import it)."""

    strategy: str
    table: pd.DataFrame
    metric: str
    n_combinations: int
    n_valid: int
    seconds: float
    engine: str
    best: dict[str, Any]


def param_columns(table: pd.DataFrame) -> list[str]:
    """The parameter columns of a sweep table: every column that is not a metric, in order."""
    return [c for c in table.columns if c not in SWEEP_METRICS]


def _varying(table: pd.DataFrame) -> list[str]:
    return [c for c in param_columns(table) if table[c].nunique(dropna=False) > 1]


def sweep_pivot(
    table: pd.DataFrame, x: str, y: str, metric: str = "sharpe", agg: str | Callable[..., Any] = "max"
) -> pd.DataFrame:
    """``metric`` over ``y`` (rows) × ``x`` (columns), sorted by value; rows that share ``(x, y)`` (other
    parameters) are aggregated by ``agg`` (any pandas aggregation: 'max', 'mean', 'median', ...). Combinations
    absent from the table (e.g. invalid ones) are NaN."""
    for c in (x, y, metric):
        if c not in table.columns:
            raise ValueError(
                f"{c!r} is not a column of the sweep table; columns: {', '.join(map(str, table.columns))}"
            )
    if x == y:
        raise ValueError(f"x and y must be two different parameters, got {x!r} twice")
    out = table.pivot_table(index=y, columns=x, values=metric, aggfunc=agg, dropna=False)
    return out.sort_index(axis=0).sort_index(axis=1).astype("float64")


def _tick(v: Any) -> str:
    f = _float(v)
    if f is not None and math.isfinite(f) and f.is_integer() and not isinstance(v, bool):
        return str(int(f))
    return str(v)


def _cell_format(metric: str) -> tuple[float, str]:
    """(scale, d3 format) for a metric in a figure, by its registry format: percentages are shown ×100."""
    d = METRICS.get(metric)
    fmt = d.fmt if d is not None else "number"
    if fmt == "pct":
        return 100.0, ".1f"
    if fmt == "count":
        return 1.0, ".0f"
    if fmt == "money":
        return 1.0, ",.0f"
    return 1.0, ".2f"


def sweep_heatmap(
    table: pd.DataFrame, x: str, y: str, metric: str = "sharpe", agg: str | Callable[..., Any] = "max"
) -> go.Figure:
    """Heatmap of ``metric`` over two parameters (see :func:`sweep_pivot`); percentage metrics are shown in %.
    The figure's ``z`` is the pivot times the display scale (1, or 100 for percentages)."""
    pv = sweep_pivot(table, x, y, metric, agg)
    scale, fmt = _cell_format(metric)
    z = pv.to_numpy(dtype="float64") * scale
    finite = z[np.isfinite(z)]
    kw: dict[str, Any] = {}
    if finite.size and finite.min() < 0 < finite.max():
        kw["zmid"] = 0.0
    unit = "%" if scale == 100.0 else ""
    others = [c for c in param_columns(table) if c not in (x, y)]
    varying_others = [c for c in others if table[c].nunique(dropna=False) > 1]
    agg_name = agg if isinstance(agg, str) else getattr(agg, "__name__", "agg")
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[_tick(v) for v in pv.columns],
            y=[_tick(v) for v in pv.index],
            colorscale="RdYlGn",
            texttemplate=f"%{{z:{fmt}}}{unit}" if z.size <= 600 else None,
            colorbar={"title": {"text": metric + (" (%)" if unit else "")}},
            hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>{metric}=%{{z:{fmt}}}{unit}<extra></extra>",
            xgap=1,
            ygap=1,
            **kw,
        )
    )
    sub = f" ({agg_name} over {', '.join(varying_others)})" if varying_others else ""
    fig.update_layout(
        title=f"{metric} by {x} × {y}{sub}",
        height=max(320, min(900, 120 + 28 * len(pv.index))),
        margin={"l": 70, "r": 20, "t": 60, "b": 50},
    )
    fig.update_xaxes(title_text=x, type="category")
    fig.update_yaxes(title_text=y, type="category")
    return fig


def sweep_line(
    table: pd.DataFrame, x: str, metric: str = "sharpe", agg: str | Callable[..., Any] = "max"
) -> go.Figure:
    """``metric`` against one parameter (others aggregated by ``agg``): for a sweep with one varying parameter."""
    if x not in table.columns or metric not in table.columns:
        raise ValueError(f"{x!r} or {metric!r} is not a column of the sweep table")
    s = table.groupby(x)[metric].agg(agg).sort_index()
    scale, fmt = _cell_format(metric)
    unit = "%" if scale == 100.0 else ""
    fig = go.Figure(
        go.Scatter(
            x=list(s.index),
            y=s.to_numpy(dtype="float64") * scale,
            mode="lines+markers",
            hovertemplate=f"{x}=%{{x}}<br>{metric}=%{{y:{fmt}}}{unit}<extra></extra>",
        )
    )
    fig.update_layout(title=f"{metric} by {x}", height=380, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=metric + (" (%)" if unit else ""))
    return fig


def _value(key: str, v: Any) -> str:
    if key in SWEEP_METRICS or key in ("dsr_normal_approx",):
        return format_metric(key, v)
    f = _float(v)
    if isinstance(v, float) and f is not None:
        return format_metric(key, f)
    return "n/a" if v is None else str(v)


def _top_html(table: pd.DataFrame, top: int) -> str:
    t = table.head(top)
    cols = ["#", *map(str, t.columns)]
    rows = []
    for i, (_, r) in enumerate(t.iterrows(), start=1):
        cells = [(str(i), "")]
        for c in t.columns:
            signed = c in ("total_return", "sharpe")
            cells.append((_value(str(c), r[c]), _sign_class(r[c]) if signed else ""))
        rows.append(cells)
    return _table(cols, rows, cls="top")


def sweep_top_table(table: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """The first ``top`` rows of a sweep table (sorted by its metric), formatted for people as in the HTML
    reports: parameters as given, returns in %, ratios to 2 decimals; ranks 1.. as the index. For
    ``print(...)`` in notebooks and terminals (the raw numbers stay in ``table``)."""
    t = table.head(top)
    out = pd.DataFrame(
        {str(c).replace("_", " "): [_value(str(c), v) for v in t[c]] for c in t.columns},
        index=pd.RangeIndex(1, len(t) + 1, name="rank"),
    )
    return out


def _best_html(best: Mapping[str, Any]) -> str:
    if not best:
        return '<p class="note">No best combination.</p>'
    rows = []
    params = best.get("params")
    if isinstance(params, Mapping):
        rows.append(("parameters", ", ".join(f"{k}={v}" for k, v in params.items())))
    for k, v in best.items():
        if k == "params":
            continue
        if k == "trials_sharpe_var":
            f = _float(v)
            rows.append((k, f"{f:.4g}" if f is not None else str(v)))
        else:
            rows.append((k, _value(str(k), v)))
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    note = ""
    if "dsr_normal_approx" in best:
        note = (
            '<p class="note">dsr_normal_approx: the deflated Sharpe ratio of the best combination for the number '
            "of valid combinations tried, with a normal approximation of its returns (skew 0, kurtosis 3); a full "
            "backtest of that combination reports the exact DSR.</p>"
        )
    return f'<table class="kv">{body}</table>{note}'


def write_sweep_report(
    sweep_result: SweepResultLike,
    path: str | Path,
    x: str | None = None,
    y: str | None = None,
    top: int = 20,
    *,
    metric: str | None = None,
    agg: str | Callable[..., Any] = "max",
    title: str | None = None,
) -> Path:
    """Write a self-contained, offline HTML report of a sweep (atomically) and return its path: a summary, the
    heatmap of ``metric`` (default: the sweep's ranking metric) over ``x`` × ``y`` (default: the first two
    parameters that vary; a line chart if only one varies), the best combination (with ``dsr_normal_approx``
    when present) and the top ``top`` rows."""
    table = sweep_result.table
    metric = metric or getattr(sweep_result, "metric", None) or "sharpe"
    varying = _varying(table)
    if x is None:
        x = next((c for c in varying if c != y), None)
    if y is None:
        y = next((c for c in varying if c != x), None)
    strategy = str(getattr(sweep_result, "strategy", "sweep"))
    title = title or f"Parameter sweep: {strategy}"
    seconds = _float(getattr(sweep_result, "seconds", None))
    n_valid = getattr(sweep_result, "n_valid", len(table))
    summary = [
        ("Strategy", strategy),
        ("Ranked by", str(metric)),
        (
            "Parameters",
            ", ".join(f"{c} ({table[c].nunique()} values)" for c in param_columns(table)) or "none",
        ),
        ("Combinations", f"{n_valid:,} valid of {getattr(sweep_result, 'n_combinations', len(table)):,}"),
        ("Engine", str(getattr(sweep_result, "engine", "n/a"))),
    ]
    if seconds:
        summary.append(("Time", f"{seconds:.2f} s ({n_valid / seconds:,.0f} combinations/s)"))
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in summary)
    sections = [_section("summary", "Summary", f'<table class="kv">{body}</table>')]
    if x is not None and y is not None and len(table):
        fig_html = figure_html(sweep_heatmap(table, x, y, metric, agg))
    elif x is not None and len(table):
        fig_html = figure_html(sweep_line(table, x, metric, agg))
    else:
        fig_html = '<p class="note">No parameter varies: nothing to map.</p>'
    sections.append(_section("heatmap", f"{metric} over the grid", fig_html))
    sections.append(_section("best", "Best combination", _best_html(getattr(sweep_result, "best", {}) or {})))
    n = len(table)
    note = f'<p class="note">Top {min(top, n):,} of {n:,} combinations by {_e(metric)}.</p>'
    sections.append(_section("top", f"Top {min(top, n)}", note + _top_html(table, top)))
    return write_atomic(path, page_html(title, sections, subtitle=f"{n:,} combinations ranked by {metric}"))
