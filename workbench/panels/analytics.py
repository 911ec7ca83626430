"""The Analytics page: the metrics of a stored backtest or of a trading session (returns, Sharpe / Sortino /
Calmar, PSR and DSR, VaR and CVaR) beside buy and hold, the equity and drawdown, rolling Sharpe, the monthly
returns heatmap, the return distribution and the trade analysis (duration and PnL per trade).

A backtest's numbers are the stored ones (``<data>/backtests/<id>/result.json``); a session's are computed
from its journal's equity with :func:`workbench.backtest.metrics.compute_metrics` (see
:mod:`workbench.panels._research`). The figures are :mod:`workbench.viz.report` and
:mod:`workbench.viz.tearsheet`'s, as in the HTML report. Nothing to show gives an empty state that says how to
get something; a figure that cannot be drawn gives an error in words, never a traceback.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as W

from workbench.backtest.results import ResultError, list_results, load_result, results_dir
from workbench.config import Settings
from workbench.metricdefs import quote_currency
from workbench.panels._research import (
    ResultView,
    data_dir,
    empty_state,
    error_state,
    figure_widget,
    list_sessions,
    metrics_html,
    result_view,
    session_view,
    table_html,
    trade_rows,
)

__all__ = ["AnalyticsPanel", "page"]

EMPTY = (
    "No stored backtest and no trading session yet: `workbench backtest ...` stores a backtest under "
    "<data>/backtests/, `workbench trade run ...` (or `workbench up`) starts a session."
)


class AnalyticsPanel:
    """The page's state: the source chooser and what it shows (``widget`` is the page)."""

    def __init__(self, data: Path, source: str | None = None) -> None:
        self.data = Path(data)
        self.view: ResultView | None = None
        self.figures: dict[str, Any] = {}
        self.metrics = W.HTML()
        self.trades = W.HTML()
        self.title = W.HTML()
        self.chooser = W.Dropdown(description="Show", layout=W.Layout(width="640px"))
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.body = W.VBox()
        self.widget = W.VBox(
            [W.HTML("<h2>Analytics</h2>"), W.HBox([self.chooser, self.refresh_button]), self.body]
        )
        self.chooser.observe(self._on_choose, names="value")
        self.refresh(source)

    # ---------------------------------------------------------------------------------------- sources

    def sources(self) -> list[tuple[str, tuple[str, str]]]:
        """(label, ("backtest", id) | ("session", name)), newest backtest first, then the sessions."""
        out = []
        for r in reversed(list_results(results_dir(self.data))):
            if r.kind != "backtest":
                continue
            sm = r.summary
            syms = ", ".join(sm.get("symbols") or [])
            out.append(
                (
                    f"backtest {r.id} · {sm.get('strategy', '?')} {syms} {sm.get('timeframe') or ''}",
                    ("backtest", r.id),
                )
            )
        out += [(f"session {s}", ("session", s)) for s in list_sessions(self.data)]
        return out

    def refresh(self, source: str | None = None) -> None:
        """Re-list the sources and show ``source`` (``backtest:<id or prefix or last>`` or ``session:<name>``),
        else the current choice, else the newest."""
        opts = self.sources()
        want = self._parse(source) if source else self.chooser.value
        self.chooser.unobserve(self._on_choose, names="value")
        self.chooser.options = opts
        values = [v for _, v in opts]
        self.chooser.value = want if want in values else (values[0] if values else None)
        self.chooser.observe(self._on_choose, names="value")
        if not opts:
            self.view = None
            self.body.children = [empty_state(EMPTY)]
            return
        if source and want not in values:
            self.body.children = [error_state(f"{source!r}: no such backtest or session in {self.data}")]
            return
        self.show(self.chooser.value)

    def _parse(self, source: str) -> tuple[str, str]:
        kind, _, ref = source.partition(":")
        if kind == "backtest":
            try:
                return ("backtest", load_result(results_dir(self.data), ref or "last").id)
            except ResultError:
                return ("backtest", ref)
        return (kind, ref)

    def _on_choose(self, change: dict[str, Any]) -> None:
        if change["new"] is not None:
            self.show(change["new"])

    # ---------------------------------------------------------------------------------------- rendering

    def load(self, choice: tuple[str, str]) -> ResultView:
        kind, ref = choice
        if kind == "backtest":
            return result_view(load_result(results_dir(self.data), ref))
        return session_view(self.data, ref)

    def show(self, choice: tuple[str, str]) -> None:
        self.body.children = [W.HTML("<i>loading…</i>")]
        try:
            view = self.load(choice)
        except (ValueError, OSError) as e:  # ResultError and JournalError are ValueErrors
            self.view = None
            self.body.children = [error_state(str(e))]
            return
        self.view = view
        self.body.children = self.render(view)

    def render(self, v: ResultView) -> list[W.Widget]:
        from workbench.viz import report, tearsheet

        cur = quote_currency(v.symbols)
        what = (
            f"{v.strategy} {v.params or ''} on {v.exchange or ''} {', '.join(v.symbols)} {v.timeframe or ''}"
        )
        period = f"{v.start:%Y-%m-%d %H:%M} .. {v.end:%Y-%m-%d %H:%M} UTC, {len(v.equity):,} points"
        self.title.value = (
            f"<h3>{html.escape(v.kind)} {html.escape(v.name)}</h3><p>{html.escape(what)}<br>{period}</p>"
        )
        columns = {"strategy" if v.kind == "backtest" else "session": v.metrics}
        if v.buy_and_hold:
            columns["buy and hold"] = v.buy_and_hold
        if v.metrics:
            self.metrics.value = metrics_html(columns, v.symbols)
        else:
            self.metrics.value = empty_state("too few equity points for metrics yet").value
        rows = trade_rows(v.trades, v.symbols)
        self.trades.value = (
            table_html(["symbol", "direction", "entry", "exit", "duration", "PnL"], rows)
            if rows
            else empty_state("no closed trades").value
        )
        builders = {
            "equity": lambda: report.equity_figure(v, benchmark=None),
            "rolling": lambda: tearsheet.rolling_figure(v),
            "monthly": lambda: report.monthly_returns_figure(v),
            "distribution": lambda: tearsheet.distribution_figure(v),
            "trades": lambda: tearsheet.trade_analysis_figure(v.trades, cur),
        }
        self.figures = {}
        parts: dict[str, W.Widget] = {}
        for name, build in builders.items():
            try:
                fig = build()
            except Exception as e:  # a figure that cannot be drawn says why; the page stays up
                parts[name] = error_state(f"{name} chart: {type(e).__name__}: {e}")
                continue
            self.figures[name] = fig
            parts[name] = figure_widget(fig)
        return [
            self.title,
            W.HTML("<h4>Metrics</h4>"),
            self.metrics,
            parts["equity"],
            parts["rolling"],
            parts["monthly"],
            parts["distribution"],
            W.HTML("<h4>Trade analysis</h4>"),
            parts["trades"],
            self.trades,
        ]


def page(
    settings: Settings | None = None, *, data: str | Path | None = None, source: str | None = None
) -> W.Widget:
    """The Analytics page. ``source``: ``backtest:<id | prefix | last>`` or ``session:<name>`` (default: the
    newest stored backtest); ``data``: the data folder (default: the settings')."""
    try:
        return AnalyticsPanel(data_dir(settings, data), source).widget
    except Exception as e:  # the settings or the data folder unreadable: say so on the page
        return error_state(f"Analytics: {type(e).__name__}: {e}")
