"""The metric registry: one definition (name, label, format, group) of every metric the workbench reports.

:mod:`workbench.backtest.metrics` computes the metrics in :data:`METRIC_KEYS` order, the sweep kernels
(:mod:`workbench.backtest.kernels`) name their columns from here, and the HTML report, the sweep report and the
command line format them with :func:`format_metric`, so that a number reads the same everywhere: returns and
drawdowns in %, durations in days, money in the quote currency, ratios with 2 decimals, probabilities with 3.
The definitions of the numbers themselves are in :mod:`workbench.backtest.metrics`.

Pure: the standard library only; it sits in the bottom layer beside :mod:`workbench.types`, so every layer
(``viz`` below ``backtest`` included) can import it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

__all__ = [
    "GROUPS",
    "METRICS",
    "METRIC_KEYS",
    "Format",
    "MetricDef",
    "format_metric",
    "group",
    "groups",
    "keys",
    "label",
    "ordered",
    "quote_currency",
]

Format = Literal["pct", "ratio", "prob", "count", "days", "money", "per_year", "number"]


@dataclass(frozen=True)
class MetricDef:
    """One metric: its key, its display label, how its value is written (``fmt``) and its report group.

    ``higher_is_better`` says how a sweep ranks it (``max_drawdown`` is negative, so closer to 0 ranks first)."""

    name: str
    label: str
    fmt: Format
    group: str
    higher_is_better: bool = True


GROUPS: Final = ("Returns", "Risk", "Benchmark", "Trades", "Distribution", "Other")
"""The report groups, in display order."""

_DEFS: Final = (
    # in display order: by group, then as the report lists them
    MetricDef("total_return", "Total return", "pct", "Returns"),
    MetricDef("annual_return", "Annual return (CAGR)", "pct", "Returns"),
    MetricDef("annual_volatility", "Annual volatility", "pct", "Returns", higher_is_better=False),
    MetricDef("sharpe", "Sharpe ratio", "ratio", "Returns"),
    MetricDef("sortino", "Sortino ratio", "ratio", "Returns"),
    MetricDef("calmar", "Calmar ratio", "ratio", "Returns"),
    MetricDef("final_equity", "Final equity", "money", "Returns"),  # the sweep kernels' column
    MetricDef("max_drawdown", "Max drawdown", "pct", "Risk"),
    MetricDef("max_drawdown_duration_days", "Longest drawdown", "days", "Risk", higher_is_better=False),
    MetricDef("var_hist", "VaR, historical (per bar)", "pct", "Risk", higher_is_better=False),
    MetricDef("cvar_hist", "CVaR, historical (per bar)", "pct", "Risk", higher_is_better=False),
    MetricDef("var_param", "VaR, Gaussian (per bar)", "pct", "Risk", higher_is_better=False),
    MetricDef("cvar_param", "CVaR, Gaussian (per bar)", "pct", "Risk", higher_is_better=False),
    MetricDef("beta", "Beta to buy and hold", "ratio", "Benchmark"),
    MetricDef("n_trades", "Closed trades", "count", "Trades"),
    MetricDef("n_open_trades", "Open trades (at the end)", "count", "Trades"),
    MetricDef("open_pnl", "Open trades' PnL (marked)", "money", "Trades"),
    MetricDef("win_rate", "Win rate", "pct", "Trades"),
    MetricDef("profit_factor", "Profit factor", "ratio", "Trades"),
    MetricDef("expectancy", "Expectancy per trade", "money", "Trades"),
    MetricDef("avg_win", "Average win", "money", "Trades"),
    MetricDef("avg_loss", "Average loss", "money", "Trades"),
    MetricDef("exposure", "Exposure", "pct", "Trades"),
    MetricDef("turnover", "Turnover", "per_year", "Trades"),
    MetricDef("skew", "Skewness", "ratio", "Distribution"),
    MetricDef("kurtosis", "Kurtosis (non-excess)", "ratio", "Distribution"),
    MetricDef("psr", "Probabilistic Sharpe (PSR)", "prob", "Distribution"),
    MetricDef("dsr", "Deflated Sharpe (DSR)", "prob", "Distribution"),
    MetricDef(
        "dsr_normal_approx", "Deflated Sharpe (normal approx.)", "prob", "Distribution"
    ),  # sweep's best
)

METRICS: Final[Mapping[str, MetricDef]] = MappingProxyType({d.name: d for d in _DEFS})
"""Every registered metric by key."""


def keys(*names: str) -> tuple[str, ...]:
    """``names`` as a tuple, each checked against the registry (an unregistered metric is a ``KeyError``)."""
    missing = [n for n in names if n not in METRICS]
    if missing:
        raise KeyError(f"metrics not in workbench.metricdefs: {', '.join(missing)}")
    return tuple(names)


METRIC_KEYS: Final = keys(
    "total_return",
    "annual_return",
    "annual_volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_duration_days",
    "win_rate",
    "profit_factor",
    "expectancy",
    "avg_win",
    "avg_loss",
    "exposure",
    "turnover",
    "n_trades",
    "n_open_trades",
    "open_pnl",
    "var_hist",
    "cvar_hist",
    "var_param",
    "cvar_param",
    "beta",
    "skew",
    "kurtosis",
    "psr",
    "dsr",
)
"""The keys of :func:`workbench.backtest.metrics.compute_metrics`, in order."""


def groups() -> dict[str, tuple[str, ...]]:
    """The metric keys of each group, in display order (groups without a metric left out)."""
    out: dict[str, list[str]] = {}
    for d in _DEFS:
        out.setdefault(d.group, []).append(d.name)
    return {g: tuple(out[g]) for g in GROUPS if g in out}


def label(name: str) -> str:
    """The display label of ``name`` (an unknown key is shown as itself, capitalised)."""
    d = METRICS.get(name)
    return d.label if d is not None else name.replace("_", " ").capitalize()


def group(name: str) -> str:
    d = METRICS.get(name)
    return d.group if d is not None else "Other"


def _float(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def format_metric(name: str, value: Any, currency: str | None = None) -> str:
    """``value`` as text by the format of metric ``name``: ``pct`` 2 decimals and '%', ``ratio`` 2 decimals,
    ``prob`` 3 decimals (a tiny probability says how small, never 0), ``days`` 1 decimal and 'days', ``money``
    2 decimals and the quote currency, ``count`` an integer; NaN is 'n/a', infinities '∞'/'−∞'. JSON's ``None``
    and the strings 'inf'/'-inf' read as NaN and infinities."""
    if isinstance(value, str) and value in ("inf", "-inf"):
        value = float(value)
    f = _float(value)
    if f is None:
        return "n/a" if value is None else str(value)
    if math.isnan(f):
        return "n/a"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    d = METRICS.get(name)
    fmt: Format = d.fmt if d is not None else ("days" if name.endswith("_days") else "number")
    if fmt == "pct":
        return f"{f * 100:,.2f}%"
    if fmt == "ratio":
        return f"{f:,.2f}"
    if fmt == "prob":
        if f == 0.0:
            return "< 1e-300"
        if f < 0.0005:
            return f"{f:.1e}"
        if 0.9995 < f < 1.0:
            return f"1 − {1.0 - f:.1e}"
        return f"{f:.3f}"
    if fmt == "count":
        return f"{f:,.0f}"
    if fmt == "days":
        return f"{f:,.1f} days"
    if fmt == "per_year":
        return f"{f:,.2f}× per year"
    if fmt == "money":
        return f"{f:,.2f}" + (f" {currency}" if currency else "")
    return f"{f:,.4g}"


def quote_currency(symbols: Sequence[str]) -> str | None:
    """The common quote currency of ccxt symbols ('BTC/USDT' -> 'USDT'), else None."""
    quotes = {str(s).split("/", 1)[1].split(":", 1)[0] for s in symbols if "/" in str(s)}
    return quotes.pop() if len(quotes) == 1 and len(symbols) > 0 else None


def ordered(names: Iterable[str]) -> list[str]:
    """``names`` in the registry's group order (registered first, by group then definition; others last)."""
    names = list(names)
    rank = {d.name: (GROUPS.index(d.group), i) for i, d in enumerate(_DEFS)}  # _DEFS is grouped already
    known = sorted((n for n in names if n in rank), key=rank.__getitem__)
    return known + [n for n in names if n not in rank]
