"""The research panels (Analytics, Backtests, Models) built against real stored results: real backtests and a
sweep run on the bundled sample and stored with ``workbench.backtest.results``, a real session journal, a real
registry holding a small torch model, a real store; the numbers the widgets show are checked against the
stored ones (or an independent calculation)."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

W = pytest.importorskip("ipywidgets")

from conftest import sample_candles  # noqa: E402

from workbench.backtest.benchmark import benchmark_name, buy_and_hold_metrics  # noqa: E402
from workbench.backtest.engine import run_backtest  # noqa: E402
from workbench.backtest.metrics import compute_metrics  # noqa: E402
from workbench.backtest.results import list_results, load_result, results_dir, store_backtest, store_sweep  # noqa: E402
from workbench.backtest.sweep import sweep  # noqa: E402
from workbench.config import load_settings  # noqa: E402
from workbench.data.files import import_candles  # noqa: E402
from workbench.data.store import Store  # noqa: E402
from workbench.metricdefs import format_metric  # noqa: E402
from workbench.panels import _research as R  # noqa: E402
from workbench.panels import analytics, backtests, models  # noqa: E402
from workbench.strategies import get_strategy  # noqa: E402
from workbench.trading.journal import Journal, journal_path  # noqa: E402
from workbench.types import Fill, Side  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_BARS = 900
MODEL = "mlp-BTCUSDT-1h-direction"


def _text(w: Any) -> str:
    """Every HTML value under a widget, unescaped (what the page shows as text)."""
    out = []
    if isinstance(w, W.HTML):
        out.append(html.unescape(w.value))
    for c in getattr(w, "children", ()) or ():
        out.append(_text(c))
    return "\n".join(out)


def _cells(table_html: str) -> list[list[str]]:
    """The rows of an HTML table (the header first), cells unescaped."""
    return [
        [html.unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", tr, re.S)]
        for tr in re.findall(r"<tr>(.*?)</tr>", table_html, re.S)
    ]


def _row(table_html: str, label: str) -> list[str]:
    for cells in _cells(table_html)[1:]:
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in the table")


def _fill(ts: int, side: str, amount: float, price: float, fee: float, tid: str) -> Fill:
    return Fill(
        client_order_id=f"c{tid}",
        symbol="BTC/USDT",
        side=Side(side),
        amount=amount,
        price=price,
        fee=fee,
        fee_currency="USDT",
        timestamp=ts,
        trade_id=tid,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Any]:
    data = tmp_path_factory.mktemp("panels") / "data"
    store = Store(data)
    import_candles(store, ROOT / "data/sample/binance/BTCUSDT_1h.csv.gz", "binance", "BTC/USDT", "1h")
    c = sample_candles("BTC", "1h", N_BARS)
    root = results_dir(data)
    stored = []
    for fast, slow in ((10, 30), (5, 20)):
        res = run_backtest(c, get_strategy("sma_cross")(fast=fast, slow=slow))
        bh = buy_and_hold_metrics(res.candles, res.start, res.end, res.config.init_cash)
        stored.append(store_backtest(root, res, bh, c, command=["test"]))
    grid = {"fast": [5, 10, 15], "slow": [20, 30, 40]}
    sw = sweep(c, "sma_cross", grid)
    bh = buy_and_hold_metrics(c, None, None, 10_000.0)
    swr = store_sweep(
        root,
        sw,
        bh,
        benchmark_name(["BTC/USDT"]),
        exchange="binance",
        symbols=["BTC/USDT"],
        timeframe="1h",
        top=5,
    )
    # a session journal, written as the engine writes it
    t0 = int(pd.Timestamp("2024-03-01", tz="UTC").value // 1_000_000)
    h = 3_600_000
    eq = 10_000.0 * np.cumprod(1.0 + 0.002 * np.sin(np.arange(300) / 7.0))
    with Journal(journal_path(data, "paper-btc")) as j:
        j.meta_set(
            "spec",
            {
                "strategy": "sma_cross",
                "params": {"fast": 10},
                "exchange": "replay",
                "symbols": ["BTC/USDT"],
                "timeframe": "1h",
            },
        )
        j.meta_set("initial_balances", {"USDT": 10_000.0})
        for i, v in enumerate(eq):
            j.record_equity(t0 + i * h, float(v))
        j.record_fill(_fill(t0 + 2 * h, "buy", 0.1, 100.0, 0.01, "1"))
        j.record_fill(_fill(t0 + 26 * h, "sell", 0.1, 110.0, 0.011, "2"))
    # a registry with one small (untrained) model, registered with the real API
    torch = pytest.importorskip("torch")
    from workbench.features.spec import Scaler
    from workbench.ml.datasets import make_features
    from workbench.ml.models import build_model
    from workbench.ml.registry import Registry, candles_hash

    full = store.candles("binance", "BTC/USDT", "1h")
    spec = {"returns": [1, 3]}
    f = make_features(full, spec)
    torch.manual_seed(0)
    reg = Registry(data / "models")
    meta = {
        "arch": "mlp",
        "target": "direction",
        "horizon": 2,
        "window": 1,
        "hparams": {"hidden": 8, "layers": 1},
        "spec": spec,
        "feature_names": list(f.columns),
        "metrics": {"mlp": {"accuracy": 0.5125, "auc": 0.5377}, "majority": {"accuracy": 0.5012}},
        "validation": {"method": "walk-forward", "folds": 3},
        "data": {
            "exchange": "binance",
            "symbol": "BTC/USDT",
            "timeframe": "1h",
            "start": str(full.index[0]),
            "end": str(full.index[-1]),
            "rows": len(full),
            "sha256": candles_hash(full),
        },
        "seed": 0,
    }
    version = reg.save(
        MODEL, build_model("mlp", f.shape[1], hidden=8, layers=1), Scaler().fit(f.dropna()), meta
    )
    reg.promote(MODEL, version)
    # a model trained on a market the store does not hold
    other = {**meta, "data": {**meta["data"], "symbol": "DOGE/USDT"}}
    reg.save(
        "mlp-DOGEUSDT-1h-direction",
        build_model("mlp", f.shape[1], hidden=8, layers=1),
        Scaler().fit(f.dropna()),
        other,
    )
    store.close()
    return {
        "data": data,
        "backtests": stored,
        "sweep": swr,
        "equity": eq,
        "t0": t0,
        "registry": reg,
        "version": version,
        "meta": meta,
        "candles": full,
    }


# ------------------------------------------------------------------------------------------ Analytics


def test_analytics_shows_the_stored_metrics_and_curves_of_a_backtest(world) -> None:
    b = world["backtests"][0]
    p = analytics.AnalyticsPanel(world["data"], f"backtest:{b.id[:20]}")
    assert p.chooser.value == ("backtest", b.id)
    d = load_result(results_dir(world["data"]), b.id).data
    m, bh = d["metrics"], d["buy_and_hold"]
    for key in ("total_return", "sharpe", "sortino", "calmar", "psr", "dsr", "var_hist", "cvar_hist"):
        label = R.label(key)
        row = _row(p.metrics.value, label)
        assert row[1] == format_metric(key, m[key], "USDT"), key
        assert row[2] == format_metric(key, bh.get(key), "USDT"), key
    # the equity curve drawn is the stored one, point for point
    eq = [v for _, v in d["equity"]]
    assert _row(p.metrics.value, R.label("final_equity"))[1] == format_metric("final_equity", eq[-1], "USDT")
    np.testing.assert_allclose(np.asarray(p.figures["equity"].data[0].y, dtype=float), eq)
    assert len(p.figures["equity"].data[0].x) == len(eq)
    # the monthly heatmap is the compounded monthly return of the stored curve (first month from the cash)
    idx = pd.to_datetime([t for t, _ in d["equity"]], utc=True, format="ISO8601")
    s = pd.Series(eq, index=idx)
    last = s.resample("ME").last()
    prev = np.concatenate([[d["config"]["init_cash"]], last.to_numpy()[:-1]])
    expect = (last.to_numpy() / prev - 1.0) * 100.0
    z = np.asarray(p.figures["monthly"].data[0].z, dtype=float).ravel()
    np.testing.assert_allclose(np.sort(z[np.isfinite(z)]), np.sort(expect), rtol=1e-9)
    # trade analysis: every closed trade with its stored PnL, in exit order
    closed = [t for t in d["trades"] if t["status"] != "open"]
    closed.sort(key=lambda t: t["exit_time"])
    np.testing.assert_allclose(
        np.asarray(p.figures["trades"].data[0].y, dtype=float), [t["pnl"] for t in closed]
    )
    rows = _cells(p.trades.value)[1:]
    assert len(rows) == min(len(closed), 200)
    newest = closed[-1]
    assert rows[0][-1] == format_metric("expectancy", newest["pnl"], "USDT")
    page = analytics.page(data=world["data"], source=f"backtest:{b.id}")
    assert isinstance(page, W.VBox)
    assert "Sharpe ratio" in _text(page)


def test_analytics_of_a_session_computes_its_metrics_from_the_journal(world) -> None:
    p = analytics.AnalyticsPanel(world["data"], "session:paper-btc")
    v = p.view
    assert v is not None and v.kind == "session"
    idx = pd.to_datetime(
        [world["t0"] + i * 3_600_000 for i in range(len(world["equity"]))], unit="ms", utc=True
    )
    s = pd.Series(world["equity"], index=idx)
    trades = R.round_trips(
        [
            {
                "timestamp": world["t0"] + 2 * 3_600_000,
                "symbol": "BTC/USDT",
                "side": "buy",
                "amount": 0.1,
                "price": 100.0,
                "fee": 0.01,
            },
            {
                "timestamp": world["t0"] + 26 * 3_600_000,
                "symbol": "BTC/USDT",
                "side": "sell",
                "amount": 0.1,
                "price": 110.0,
                "fee": 0.011,
            },
        ]
    )
    expect = compute_metrics(s, trades)
    for key in ("sharpe", "sortino", "calmar", "psr", "var_hist", "cvar_hist", "total_return"):
        assert _row(p.metrics.value, R.label(key))[1] == format_metric(key, expect[key], "USDT"), key
    assert v.config.init_cash == 10_000.0
    # the one round trip: +1.0 from the prices, less 0.021 of fees, held one day
    row = _cells(p.trades.value)[1]
    assert row[-2] == "1.0 days" and row[-1] == format_metric("expectancy", 1.0 - 0.021, "USDT")


def test_round_trips_split_a_fill_that_flips_the_position() -> None:
    fills = [
        {"timestamp": 0, "symbol": "X/USDT", "side": "buy", "amount": 1.0, "price": 10.0, "fee": 0.0},
        {"timestamp": 1000, "symbol": "X/USDT", "side": "buy", "amount": 1.0, "price": 12.0, "fee": 0.0},
        # sells 2 to close the long (avg 11) at 13, and 1 more opens a short
        {"timestamp": 2000, "symbol": "X/USDT", "side": "sell", "amount": 3.0, "price": 13.0, "fee": 0.3},
        {"timestamp": 3000, "symbol": "X/USDT", "side": "buy", "amount": 1.0, "price": 12.5, "fee": 0.0},
    ]
    t = R.round_trips(fills)
    assert list(t["direction"]) == ["long", "short"]
    assert t["pnl"].tolist() == pytest.approx([(26.0 - 22.0) - 0.2, 0.5 - 0.1])
    assert t["size"].tolist() == pytest.approx([2.0, 1.0])


def test_analytics_empty_and_unknown_sources_say_so_in_words(tmp_path: Path, world) -> None:
    p = analytics.AnalyticsPanel(tmp_path / "nothing")
    assert p.view is None and "No stored backtest and no trading session yet" in _text(p.widget)
    q = analytics.AnalyticsPanel(world["data"], "session:no-such-session")
    assert "no such backtest or session" in _text(q.body)
    # a session with a journal but no equity yet: an empty state, not a traceback
    with Journal(journal_path(tmp_path / "d", "fresh")):
        pass
    r = analytics.AnalyticsPanel(tmp_path / "d", "session:fresh")
    assert "no equity recorded yet" in _text(r.body)
    assert "Traceback" not in _text(r.widget)


# ------------------------------------------------------------------------------------------ Backtests


def test_backtests_page_lists_compares_and_draws_stored_results(world, tmp_path: Path) -> None:
    p = backtests.BacktestsPanel(world["data"], load_settings())
    listed = _text(p.list_html)
    for r in list_results(results_dir(world["data"])):
        assert r.id in listed
        sm = r.summary["metrics"]
        assert _row(p.list_html.value, r.id)[7] == format_metric("sharpe", sm["sharpe"], "USDT")
    a, b = world["backtests"]
    p.compare([a.id, b.id])
    fig = p.figures["compare"]
    assert len(fig.data) == 2
    for trace, r in zip(fig.data, (a, b), strict=True):
        eq = np.asarray([v for _, v in r.data["equity"]])
        np.testing.assert_allclose(np.asarray(trace.y, dtype=float), eq / r.data["config"]["init_cash"])
    mt = p.compare_out.children[1].value
    row = _row(mt, R.label("sharpe"))
    assert row[1:] == [format_metric("sharpe", r.data["metrics"]["sharpe"], "USDT") for r in (a, b)]
    # the sweep heatmap: the stored combinations' Sharpe on fast x slow
    assert p.sweep_select.value == world["sweep"].id
    assert (p.sweep_x.value, p.sweep_y.value, p.sweep_metric.value) == ("fast", "slow", "sharpe")
    z = np.asarray(p.figures["sweep"].data[0].z, dtype=float)
    res = {(r["fast"], r["slow"]): r["sharpe"] for r in world["sweep"].data["results"]}
    xs = [int(float(x)) for x in p.figures["sweep"].data[0].x]
    ys = [int(float(y)) for y in p.figures["sweep"].data[0].y]
    for i, yv in enumerate(ys):
        for k, xv in enumerate(xs):
            want = res.get((xv, yv))
            assert math.isnan(z[i, k]) if want is None else z[i, k] == pytest.approx(want), (xv, yv)


def test_backtests_report_opens_inline_and_runs_are_listed(world) -> None:
    runs = world["data"] / "runs"
    (runs / "20261201-a").mkdir(parents=True)
    (runs / "20261201-a" / "manifest.json").write_text(
        json.dumps(
            {
                "run_id": "20261201-a",
                "status": "succeeded",
                "stages": [{"name": "collect", "status": "succeeded"}],
            }
        )
    )
    (runs / "20261201-b").mkdir()
    (runs / "20261201-b" / "manifest.json").write_text("{not json")
    p = backtests.BacktestsPanel(world["data"], load_settings())
    assert _row(p.runs_html.value, "20261201-a")[1] == "succeeded"
    assert _row(p.runs_html.value, "20261201-b")[1] == "unreadable"
    b = world["backtests"][0]
    p.open_report(b.id)
    shown = p.report_out.children[0].value
    doc = (b.path / "report.html").read_text(encoding="utf-8")
    srcdoc = shown.split('srcdoc="', 1)[1].split('" style=', 1)[0]
    assert html.unescape(srcdoc) == doc


def test_backtests_form_runs_in_a_thread_and_stores_like_the_cli(world, monkeypatch) -> None:
    p = backtests.BacktestsPanel(world["data"], load_settings())
    before = {r.id for r in list_results(results_dir(world["data"]))}
    p.f_strategy.value = "sma_cross"
    p.f_params.value = "fast=8, slow=21"
    p.f_end.value = "2024-02-01"
    t = p.start_run()
    assert t is not None
    t.join(120)
    assert p.progress.bar_style == "success", p.f_status.value
    assert p.progress.value == p.progress.max
    new = {r.id for r in list_results(results_dir(world["data"]))} - before
    assert len(new) == 1 and p.last_stored is not None and p.last_stored.id in new
    stored = load_result(results_dir(world["data"]), p.last_stored.id)
    # the same backtest run directly, on the same stored candles and settings
    cfg = __import__("workbench.backtest.engine", fromlist=["BacktestConfig"]).BacktestConfig.from_trading(
        load_settings().trading
    )
    with Store(world["data"]) as st:
        c = st.candles("binance", "BTC/USDT", "1h")
    c = c[c.index < pd.Timestamp("2024-02-01", tz="UTC")]
    res = run_backtest(c, get_strategy("sma_cross")(fast=8, slow=21), cfg)
    assert stored.data["metrics"]["sharpe"] == pytest.approx(res.metrics["sharpe"], rel=1e-12)
    assert stored.report is not None and p.last_stored.id in p.list_html.value
    # a bad parameter: said in words, nothing stored
    p.f_params.value = "fast=8 speed=3"
    p.start_run().join(60)
    assert p.progress.bar_style == "danger" and "speed" in html.unescape(p.f_status.value)
    assert {r.id for r in list_results(results_dir(world["data"]))} - before == new
    # a small sweep
    p.f_mode.value = "sweep"
    p.f_grid.value = "fast=5,10 slow=20,30"
    p.start_run().join(120)
    assert p.progress.bar_style == "success", p.f_status.value
    assert p.last_stored is not None and p.last_stored.kind == "sweep"
    assert p.last_stored.data["n_valid"] == 4


def test_backtests_page_empty_state(tmp_path: Path) -> None:
    w = backtests.page(data=tmp_path / "empty")
    text = _text(w)
    assert "No stored results yet" in text and "No pipeline runs" in text and "No stored sweep" in text


# ------------------------------------------------------------------------------------------ Models


def test_models_page_shows_the_registry_and_lineage(world) -> None:
    p = models.ModelsPanel(world["data"], world["data"] / "models", bars=150)
    row = _row(p.table.value, MODEL)
    assert row[1] == world["version"] and row[2] == "yes"
    assert row[7] == format_metric("accuracy", 0.5125) and row[8] == format_metric("auc", 0.5377)
    p.chooser.value = (MODEL, world["version"])
    text = _text(p.details)
    assert world["meta"]["data"]["sha256"] in text
    assert "walk-forward, 3 folds" in text and "promote" in text
    assert _row(p.details.children[1].value, "accuracy")[1:] == [
        format_metric("accuracy", 0.5125),
        format_metric("accuracy", 0.5012),
    ]


def test_models_predictions_beside_realised_outcomes(world) -> None:
    from workbench.ml.predict import PredictionService

    p = models.ModelsPanel(world["data"], world["data"] / "models", bars=150)
    p.chooser.value = (MODEL, world["version"])
    p.predict()
    c = world["candles"]
    svc = PredictionService.from_registry(world["registry"], MODEL, world["version"])
    want = svc.predict_batch(c).iloc[-150:]
    np.testing.assert_allclose(p.prediction.to_numpy(), want.to_numpy(), rtol=1e-6)
    close = c["close"].iloc[-150:].to_numpy()
    real = p.realised.to_numpy()
    # horizon 2: up (1) when close[t+2] > close[t]; the last two bars have no outcome yet
    assert np.isnan(real[-2:]).all()
    np.testing.assert_array_equal(real[:-2], (close[2:] > close[:-2]).astype(float))
    fig = p.figures["predictions"]
    np.testing.assert_allclose(np.asarray(fig.data[1].y, dtype=float), want.to_numpy(), rtol=1e-6)
    assert "hit rate" in _text(p.predict_out)


def test_models_empty_states(world, tmp_path: Path) -> None:
    p = models.ModelsPanel(world["data"], world["data"] / "models")
    p.chooser.value = ("mlp-DOGEUSDT-1h-direction", "v0001")
    p.predict()
    assert "No stored 1h candles of binance DOGE/USDT" in _text(p.predict_out)
    assert "No sentiment model" in _text(p.sentiment_out)
    e = models.ModelsPanel(tmp_path / "d", tmp_path / "d" / "models")
    assert "No model in the registry" in _text(e.widget) and e.predict_button.disabled


# ------------------------------------------------------------------------------------------ notebooks


@pytest.mark.parametrize("name", ["analytics", "backtests", "models"])
def test_dashboard_notebooks_are_thin_and_build_their_page(name: str, world) -> None:
    import subprocess
    import sys

    nb = ROOT / "dashboards" / f"{name}.ipynb"
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools/check_notebooks.py"), str(nb)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    ns: dict[str, Any] = {}
    exec("".join(cells[0]["source"]), ns)  # the parameters cell
    ns["data"] = str(world["data"])  # what papermill / Voilà's parameters would set
    *body, last = "".join(cells[1]["source"]).strip().splitlines()
    exec("\n".join(body), ns)
    page = eval(last, ns)  # the cell's last expression is what Voilà displays
    assert isinstance(page, W.Widget) and not isinstance(page, W.HTML), _text(page)
