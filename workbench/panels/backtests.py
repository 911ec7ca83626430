"""The Backtests page: browse the stored backtests and sweeps (``<data>/backtests/``,
:mod:`workbench.backtest.results`) and the pipeline runs (``<data>/runs/<id>/manifest.json``), compare two or
more backtests side by side (equity as growth of 1, metrics), draw a sweep's heatmap
(:func:`workbench.viz.sweep.sweep_heatmap`), open a result's HTML report, and run a backtest or a small sweep
from a form, stored like any other.

The HTML report is shown **inline**, in an ``<iframe srcdoc=...>``, when asked for (the "Open report" button):
reports are files in the data folder, which Voilà does not serve (it serves the dashboards folder only), and a
file route would have to be opened outside the token; srcdoc needs no route and works offline (the report
inlines plotly.js). Reports above :data:`MAX_INLINE_REPORT` bytes are not inlined: the page gives their path.

The run form works in a background thread of the kernel, so the page stays responsive; an ``IntProgress``
shows the steps (load candles, run, buy and hold, store). The result is stored with
:func:`workbench.backtest.results.store_backtest` / :func:`~workbench.backtest.results.store_sweep`, exactly as
``workbench backtest`` and ``workbench sweep`` store theirs; a bad input (unknown strategy, parameter, symbol,
period) is shown in words and stores nothing.
"""

from __future__ import annotations

import html
import json
import threading
from pathlib import Path
from typing import Any

import ipywidgets as W
import pandas as pd

from workbench.backtest.results import StoredResult, list_results, load_result, results_dir
from workbench.config import Settings, load_settings
from workbench.metricdefs import format_metric, label, quote_currency
from workbench.panels._research import (
    data_dir,
    empty_state,
    error_state,
    figure_widget,
    metrics_html,
    result_view,
    table_html,
)

__all__ = ["MAX_INLINE_REPORT", "BacktestsPanel", "list_runs", "page", "parse_params"]

MAX_INLINE_REPORT = 40 * 1024 * 1024
"""Largest report (bytes) shown inline; larger ones are named by path."""

HEADLINE = ("total_return", "sharpe", "max_drawdown", "n_trades")
RUN_STEPS = ("load candles", "run", "buy and hold", "store")


def list_runs(data: Path) -> list[dict[str, Any]]:
    """The pipeline runs' manifests (``<data>/runs/*/manifest.json``), oldest first; an unreadable manifest
    is listed with an ``error``."""
    root = Path(data) / "runs"
    out = []
    for m in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
        try:
            doc = json.loads(m.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            doc = {"run_id": m.parent.name, "status": "unreadable", "error": f"{m}: {e}"}
        doc.setdefault("run_id", m.parent.name)
        out.append(doc)
    return out


def parse_params(text: str) -> dict[str, str]:
    """``"fast=10, slow=30"`` (commas or spaces between) -> ``{"fast": "10", "slow": "30"}``; a ``ValueError``
    naming the bad item."""
    out: dict[str, str] = {}
    for item in text.replace(",", " ").split() if text else []:
        if "=" not in item:
            raise ValueError(f"parameter {item!r}: expected name=value")
        k, _, v = item.partition("=")
        if not k.strip() or not v.strip():
            raise ValueError(f"parameter {item!r}: expected name=value")
        out[k.strip()] = v.strip()
    return out


def _grid_specs(text: str) -> list[str]:
    """``"fast=5:20:5 slow=30,50"`` -> ``["fast=5:20:5", "slow=30,50"]`` (``workbench sweep --grid`` items)."""
    return [s for s in text.split() if s]


class BacktestsPanel:
    """The page's state (``widget`` is the page)."""

    def __init__(self, data: Path, settings: Settings | None = None) -> None:
        self.data = Path(data)
        self.settings = settings
        self.results: list[StoredResult] = []
        self.figures: dict[str, Any] = {}
        self.thread: threading.Thread | None = None
        self.last_stored: StoredResult | None = None

        self.list_html = W.HTML()
        self.runs_html = W.HTML()
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())

        # compare
        self.compare_select = W.SelectMultiple(description="Compare", rows=6, layout=W.Layout(width="640px"))
        self.compare_button = W.Button(description="Compare")
        self.compare_button.on_click(lambda _: self.compare())
        self.compare_out = W.VBox()

        # sweep heatmap
        self.sweep_select = W.Dropdown(description="Sweep", layout=W.Layout(width="640px"))
        self.sweep_x = W.Dropdown(description="x")
        self.sweep_y = W.Dropdown(description="y")
        self.sweep_metric = W.Dropdown(description="metric")
        self.sweep_out = W.VBox()
        self.sweep_select.observe(lambda _: self._sweep_axes(), names="value")
        for w in (self.sweep_x, self.sweep_y, self.sweep_metric):
            w.observe(lambda _: self.draw_sweep(), names="value")

        # report
        self.report_select = W.Dropdown(description="Report", layout=W.Layout(width="640px"))
        self.report_button = W.Button(description="Open report")
        self.report_button.on_click(lambda _: self.open_report())
        self.report_out = W.VBox()

        # run form
        from workbench.strategies import strategy_names

        self.f_mode = W.ToggleButtons(options=["backtest", "sweep"], value="backtest", description="Run")
        names = list(strategy_names())
        self.f_strategy = W.Dropdown(
            options=names, value="sma_cross" if "sma_cross" in names else names[0], description="strategy"
        )
        self.f_exchange = W.Text(value="binance", description="exchange")
        self.f_symbols = W.Text(value="BTC/USDT", description="symbols", placeholder="BTC/USDT, ETH/USDT")
        self.f_timeframe = W.Text(value="1h", description="timeframe")
        self.f_start = W.Text(description="start", placeholder="2024-01-01 (optional)")
        self.f_end = W.Text(description="end", placeholder="2024-06-01 (optional)")
        self.f_params = W.Text(description="params", placeholder="fast=10 slow=30")
        self.f_grid = W.Text(description="grid", placeholder="fast=5:20:5 slow=30,50 (sweep)")
        self.f_run = W.Button(description="Run", button_style="primary", icon="play")
        self.f_run.on_click(lambda _: self.start_run())
        self.progress = W.IntProgress(value=0, min=0, max=len(RUN_STEPS), description="")
        self.f_status = W.HTML()
        form = W.VBox(
            [
                self.f_mode,
                W.HBox([self.f_strategy, self.f_exchange]),
                W.HBox([self.f_symbols, self.f_timeframe]),
                W.HBox([self.f_start, self.f_end]),
                W.HBox([self.f_params, self.f_grid]),
                W.HBox([self.f_run, self.progress]),
                self.f_status,
            ]
        )

        self.widget = W.VBox(
            [
                W.HTML("<h2>Backtests</h2>"),
                self.refresh_button,
                W.HTML("<h4>Stored results</h4>"),
                self.list_html,
                W.HTML("<h4>Pipeline runs</h4>"),
                self.runs_html,
                W.HTML("<h4>Compare</h4>"),
                W.HBox([self.compare_select, self.compare_button]),
                self.compare_out,
                W.HTML("<h4>Sweep heatmap</h4>"),
                self.sweep_select,
                W.HBox([self.sweep_x, self.sweep_y, self.sweep_metric]),
                self.sweep_out,
                W.HTML("<h4>HTML report</h4>"),
                W.HBox([self.report_select, self.report_button]),
                self.report_out,
                W.HTML("<h4>Run a backtest or a small sweep</h4>"),
                form,
            ]
        )
        self.refresh()

    # ---------------------------------------------------------------------------------------- listing

    def refresh(self) -> None:
        self.results = list_results(results_dir(self.data))
        ok = [r for r in self.results if "error" not in r.data]
        rows = []
        for r in reversed(self.results):
            sm, d = r.summary, r.data
            if "error" in d:
                rows.append([r.id, "unreadable", str(d["error"]), "", "", "", *[""] * len(HEADLINE)])
                continue
            syms = list(sm.get("symbols") or [])
            cur = quote_currency(syms)
            m = sm.get("metrics") or {}
            period = (
                f"{str(sm.get('start', ''))[:10]} .. {str(sm.get('end', ''))[:10]}" if sm.get("start") else ""
            )
            rows.append(
                [
                    r.id,
                    r.kind,
                    sm.get("strategy", ""),
                    ", ".join(syms),
                    sm.get("timeframe") or "",
                    period,
                    *(format_metric(k, m.get(k), cur) for k in HEADLINE),
                ]
            )
        self.list_html.value = (
            table_html(
                ["id", "kind", "strategy", "symbols", "tf", "period", *(label(k) for k in HEADLINE)], rows
            )
            if rows
            else empty_state(
                "No stored results yet: `workbench backtest ...` and `workbench sweep ...` store theirs under "
                f"{results_dir(self.data)}, and so does the form below."
            ).value
        )
        runs = list_runs(self.data)
        self.runs_html.value = (
            table_html(
                ["run", "status", "started", "finished", "stages"],
                [
                    [
                        r.get("run_id", ""),
                        r.get("status", ""),
                        str(r.get("started") or r.get("start") or ""),
                        str(r.get("finished") or r.get("end") or ""),
                        ", ".join(
                            f"{s.get('name', '?')}: {s.get('status', '?')}"
                            for s in (r.get("stages") or [])
                            if isinstance(s, dict)
                        )
                        or r.get("error", ""),
                    ]
                    for r in reversed(runs)
                ],
            )
            if runs
            else empty_state(
                f"No pipeline runs in {self.data / 'runs'}: `workbench pipeline run` makes one."
            ).value
        )
        backtests = [
            (f"{r.id} · {r.summary.get('strategy', '')}", r.id) for r in reversed(ok) if r.kind == "backtest"
        ]
        sweeps = [
            (f"{r.id} · {r.summary.get('strategy', '')}", r.id) for r in reversed(ok) if r.kind == "sweep"
        ]
        reports = [(f"{r.id} · {r.kind}", r.id) for r in reversed(ok) if r.report is not None]
        self.compare_select.options = backtests
        self._keep(self.sweep_select, sweeps)
        self._keep(self.report_select, reports)
        if not backtests:
            self.compare_out.children = [empty_state("No stored backtest to compare.")]
        elif not self.compare_select.value:  # the newest one is shown until the visitor chooses
            self.compare_select.value = (backtests[0][1],)
            self.compare()
        if not sweeps:
            self.sweep_out.children = [
                empty_state("No stored sweep: `workbench sweep ...` or the form below.")
            ]
        if not reports:
            self.report_out.children = [empty_state("No stored report.")]

    @staticmethod
    def _keep(dd: W.Dropdown, options: list[tuple[str, str]]) -> None:
        old = dd.value
        dd.options = options
        values = [v for _, v in options]
        dd.value = old if old in values else (values[0] if values else None)

    # ---------------------------------------------------------------------------------------- compare

    def compare(self, ids: list[str] | tuple[str, ...] | None = None) -> None:
        """Equity (growth of 1) and metrics of the chosen backtests, side by side."""
        from workbench.viz.tearsheet import equity_compare_figure

        ids = list(ids if ids is not None else self.compare_select.value)
        if len(ids) < 1:
            self.compare_out.children = [
                empty_state("Choose one or more backtests (ctrl-click for several).")
            ]
            return
        views = {}
        try:
            for rid in ids:
                views[rid] = result_view(load_result(results_dir(self.data), rid))
        except ValueError as e:
            self.compare_out.children = [error_state(str(e))]
            return
        symbols = sorted({s for v in views.values() for s in v.symbols})
        fig = equity_compare_figure(
            {rid: v.equity for rid, v in views.items()},
            {rid: getattr(v.config, "init_cash", None) for rid, v in views.items()},
        )
        self.figures["compare"] = fig
        self.compare_metrics = {rid: v.metrics for rid, v in views.items()}
        heads = {f"{v.strategy} {v.params}": v.metrics for v in views.values()}
        if len(heads) < len(views):  # same strategy and params twice: the ids tell them apart
            heads = {rid: v.metrics for rid, v in views.items()}
        self.compare_out.children = [figure_widget(fig), W.HTML(metrics_html(heads, symbols))]

    # ---------------------------------------------------------------------------------------- sweeps

    def sweep_table(self, rid: str) -> pd.DataFrame:
        r = load_result(results_dir(self.data), rid)
        return pd.DataFrame(r.data.get("results") or [])

    def _sweep_axes(self) -> None:
        from workbench.viz.sweep import SWEEP_METRICS, param_columns

        rid = self.sweep_select.value
        if rid is None:
            return
        try:
            table = self.sweep_table(rid)
        except ValueError as e:
            self.sweep_out.children = [error_state(str(e))]
            return
        params = [c for c in param_columns(table) if table[c].nunique(dropna=False) > 1] or param_columns(
            table
        )
        metrics = [m for m in SWEEP_METRICS if m in table]
        self._hold = True
        try:
            self.sweep_x.options = params
            self.sweep_y.options = params
            self.sweep_metric.options = metrics
            self.sweep_x.value = params[0] if params else None
            self.sweep_y.value = params[1] if len(params) > 1 else (params[0] if params else None)
            ranked = load_result(results_dir(self.data), rid).data.get("metric")
            self.sweep_metric.value = ranked if ranked in metrics else (metrics[0] if metrics else None)
        finally:
            self._hold = False
        self.draw_sweep()

    def draw_sweep(self) -> None:
        from workbench.viz.sweep import sweep_heatmap, sweep_line

        if getattr(self, "_hold", False):
            return
        rid, x, y, metric = (
            self.sweep_select.value,
            self.sweep_x.value,
            self.sweep_y.value,
            self.sweep_metric.value,
        )
        if rid is None or x is None or metric is None:
            return
        try:
            table = self.sweep_table(rid)
            fig = sweep_line(table, x, metric) if y is None or y == x else sweep_heatmap(table, x, y, metric)
        except (ValueError, KeyError) as e:
            self.sweep_out.children = [error_state(f"sweep {rid}: {e}")]
            return
        self.figures["sweep"] = fig
        self.sweep_out.children = [figure_widget(fig)]

    # ---------------------------------------------------------------------------------------- report

    def open_report(self, rid: str | None = None) -> None:
        """The chosen result's HTML report inline (iframe srcdoc), or its path when too large to inline."""
        rid = rid or self.report_select.value
        if rid is None:
            self.report_out.children = [empty_state("No stored report.")]
            return
        try:
            r = load_result(results_dir(self.data), rid)
        except ValueError as e:
            self.report_out.children = [error_state(str(e))]
            return
        if r.report is None:
            self.report_out.children = [empty_state(f"{r.id} has no report.html")]
            return
        size = r.report.stat().st_size
        if size > MAX_INLINE_REPORT:
            self.report_out.children = [
                empty_state(f"The report is {size / 2**20:.0f} MB, too large to show here: open {r.report}")
            ]
            return
        doc = r.report.read_text(encoding="utf-8")
        self.report_out.children = [
            W.HTML(
                f'<p>{html.escape(str(r.report))}</p><iframe title="report {html.escape(r.id)}" '
                f'srcdoc="{html.escape(doc, quote=True)}" style="width:100%;height:900px;border:1px solid #ddd">'
                "</iframe>"
            )
        ]

    # ---------------------------------------------------------------------------------------- run form

    def start_run(self) -> threading.Thread | None:
        """Run the form's backtest or sweep in a background thread (the page stays responsive); returns the
        thread, or None when one is already running."""
        if self.thread is not None and self.thread.is_alive():
            self.f_status.value = "<i>a run is in progress</i>"
            return None
        form = {
            "mode": self.f_mode.value,
            "strategy": self.f_strategy.value,
            "exchange": self.f_exchange.value.strip(),
            "symbols": [s.strip() for s in self.f_symbols.value.split(",") if s.strip()],
            "timeframe": self.f_timeframe.value.strip(),
            "start": self.f_start.value.strip() or None,
            "end": self.f_end.value.strip() or None,
            "params": self.f_params.value,
            "grid": self.f_grid.value,
        }
        self.f_run.disabled = True
        self.progress.value = 0
        self.progress.bar_style = ""
        self.f_status.value = "<i>starting…</i>"
        self.thread = threading.Thread(
            target=self._run_safely, args=(form,), name="wb-backtest-form", daemon=True
        )
        self.thread.start()
        return self.thread

    def _step(self, i: int) -> None:
        self.progress.value = i
        self.f_status.value = f"<i>{html.escape(RUN_STEPS[i] if i < len(RUN_STEPS) else 'done')}…</i>"

    def _run_safely(self, form: dict[str, Any]) -> None:
        try:
            saved = self.run(form)
        except Exception as e:  # shown in words on the page; nothing was stored (store is atomic and last)
            self.progress.bar_style = "danger"
            self.f_status.value = error_state(f"{form['mode']} not run: {type(e).__name__}: {e}").value
        else:
            self.last_stored = saved
            self.progress.value = len(RUN_STEPS)
            self.progress.bar_style = "success"
            m = saved.summary.get("metrics") or {}
            cur = quote_currency(saved.summary.get("symbols") or [])
            head = ", ".join(f"{label(k)} {format_metric(k, m.get(k), cur)}" for k in HEADLINE)
            self.f_status.value = f"stored as <b>{html.escape(saved.id)}</b>: {html.escape(head)}"
            self.refresh()
        finally:
            self.f_run.disabled = False

    def run(self, form: dict[str, Any]) -> StoredResult:
        """Run and store one backtest or sweep described by ``form`` (the form's fields); raises on bad input."""
        from workbench.backtest.benchmark import benchmark_name, buy_and_hold_metrics
        from workbench.backtest.engine import BacktestConfig, run_backtest
        from workbench.backtest.results import store_backtest, store_sweep
        from workbench.backtest.sweep import parse_grid, sweep
        from workbench.data.store import Store
        from workbench.strategies import get_strategy

        symbols = list(form["symbols"])
        if not symbols:
            raise ValueError("give at least one symbol")
        cls = get_strategy(form["strategy"])
        settings = self.settings or load_settings()
        cfg = BacktestConfig.from_trading(settings.trading)
        start = pd.Timestamp(form["start"], tz="UTC") if form.get("start") else None
        end = pd.Timestamp(form["end"], tz="UTC") if form.get("end") else None
        if form["mode"] == "sweep":
            grid = parse_grid(_grid_specs(form.get("grid") or ""), cls)
            if not grid:
                raise ValueError("a sweep needs a grid, e.g. fast=5:20:5 slow=30,50")
        else:
            strat = cls(**parse_params(form.get("params") or ""))
        self._step(0)
        store = Store(self.data, create=False)
        frames = {}
        for s in symbols:
            c = store.candles(form["exchange"], s, form["timeframe"])
            if end is not None:
                c = c[c.index < end]
            if not len(c):
                raise ValueError(f"no {form['timeframe']} candles of {form['exchange']} {s} before {end}")
            if start is not None and not (c.index >= start).any():
                raise ValueError(f"no {form['timeframe']} candles of {form['exchange']} {s} from {start}")
            frames[s] = c
        data = frames[symbols[0]] if len(symbols) == 1 else frames
        self._step(1)
        root = results_dir(self.data)
        command = [
            f"dashboard {form['mode']}",
            json.dumps({k: v for k, v in form.items() if k != "mode"}, default=str),
        ]
        if form["mode"] == "sweep":
            res = sweep(data, cls, grid, cfg, start=start)
            self._step(2)
            bh = buy_and_hold_metrics(data, start, None, cfg.init_cash)
            self._step(3)
            return store_sweep(
                root,
                res,
                bh,
                benchmark_name(symbols),
                exchange=form["exchange"],
                symbols=symbols,
                timeframe=form["timeframe"],
                command=command,
            )
        res = run_backtest(data, strat, cfg, start=start)
        self._step(2)
        bh = buy_and_hold_metrics(res.candles, res.start, res.end, cfg.init_cash)
        self._step(3)
        return store_backtest(root, res, bh, data, command=command)


def page(settings: Settings | None = None, *, data: str | Path | None = None) -> W.Widget:
    """The Backtests page; ``data``: the data folder (default: the settings')."""
    try:
        return BacktestsPanel(data_dir(settings, data), settings).widget
    except Exception as e:  # the settings or the data folder unreadable: say so on the page
        return error_state(f"Backtests: {type(e).__name__}: {e}")
