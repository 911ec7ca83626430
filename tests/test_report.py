"""HTML reports of backtests and sweeps (workbench.viz.report, workbench.viz.sweep): offline, one plotly.js
bundle, every section present, numbers that match direct pandas computations, escaped user strings."""

from __future__ import annotations

import html
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from plotly.offline import get_plotlyjs

from workbench.backtest.engine import BacktestConfig, run_backtest
from workbench.backtest.sweep import sweep
from workbench.strategies import get_strategy
from workbench.types import candles_from_frame
from workbench.viz import (
    equity_figure,
    metrics_table,
    monthly_returns,
    monthly_returns_figure,
    sweep_heatmap,
    sweep_pivot,
    trades_figure,
    write_report,
    write_sweep_report,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "binance" / "BTCUSDT_1h.csv.gz"


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    c = candles_from_frame(pd.read_csv(SAMPLE), timeframe="1h", source="sample")
    c.attrs["symbol"] = "BTC/USDT"
    return c


@pytest.fixture(scope="module")
def result(candles: pd.DataFrame):
    strat = get_strategy("sma_cross")(fast=10, slow=50)
    return run_backtest(candles, strat, BacktestConfig(fees=0.001, slippage=0.0005))


@pytest.fixture(scope="module")
def indicators(candles: pd.DataFrame) -> dict[str, pd.Series]:
    close = candles["close"].to_numpy()
    return {f"SMA {n}": pd.Series(talib.SMA(close, n), index=candles.index) for n in (10, 50)}


@pytest.fixture(scope="module")
def report(tmp_path_factory, result, candles, indicators) -> tuple[Path, str]:
    path = write_report(
        result, tmp_path_factory.mktemp("report") / "out" / "report.html", candles, indicators
    )
    return path, path.read_text(encoding="utf-8")


def _bundle_marker() -> str:
    """A piece of the plotly.js bundle that occurs exactly once in it."""
    js = get_plotlyjs()
    marker = js[len(js) // 2 : len(js) // 2 + 300]
    assert js.count(marker) == 1
    return marker


def _section(text: str, id_: str) -> str:
    start = text.index(f'<section id="{id_}">')
    return text[start : text.index("</section>", start)]


# ------------------------------------------------------------------------------------------ the report file


def test_report_is_one_offline_file(report) -> None:
    path, text = report
    assert path.exists() and path.name == "report.html"
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # atomic write leaves no temp file
    assert text.startswith("<!DOCTYPE html>")
    assert text.count(_bundle_marker()) == 1  # plotly.js embedded exactly once
    assert text.count("plotly.js v") == 1
    assert '<script src="http' not in text and "<script src=" not in text
    body = text[text.index("</head>") :]  # (the bundle itself names a CDN as topojson's default URL)
    assert 'src="http' not in body and "cdn.plot.ly" not in body
    assert text.count('class="plotly-graph-div"') == 3  # equity, price, monthly
    assert path.stat().st_size < 15_000_000


def test_report_contents(report, result) -> None:
    _, text = report
    assert "sma_cross" in text
    assert "fast=10, slow=50" in text
    assert "BTC/USDT" in text
    # the data range
    assert f"{result.start:%Y-%m-%d %H:%M} – {result.end:%Y-%m-%d %H:%M} UTC" in text
    assert "2024-01-01 00:00" in text
    # the configuration
    assert "0.1% of notional per fill" in text and "0.05% of the open price" in text
    for section in ("summary", "metrics", "equity", "price", "monthly", "trades-list"):
        assert f'<section id="{section}">' in text
    # every metric label, and its formatted value
    table = metrics_table(result)
    assert set(table.index) == set(result.metrics)
    metrics = _section(text, "metrics")
    for key, row in table.iterrows():
        assert html.escape(row["metric"]) in metrics, key
        assert html.escape(row["value"]) in metrics, key
    # the trades: one row each (fewer than 500 here) plus the header
    n = len(result.trades)
    assert 0 < n < 500
    trades = _section(text, "trades-list")
    assert trades.count("<tr>") == n + 1
    assert f"{n:,} trades." in trades
    n_open = int((result.trades["status"] == "open").sum())
    summary = f"{n - n_open:,} closed" + (f", {n_open:,} open" if n_open else "")
    assert f"<tr><td>Trades</td><td>{summary}</td></tr>" in text


def test_trades_list_is_capped(tmp_path, result) -> None:
    path = write_report(result, tmp_path / "r.html", max_trades=7)
    trades = _section(path.read_text(encoding="utf-8"), "trades-list")
    assert trades.count("<tr>") == 7 + 1
    assert f"Showing the first 7 of {len(result.trades):,} trades." in trades
    assert "No candles were given." in path.read_text(encoding="utf-8")


def test_title_is_escaped(tmp_path, result) -> None:
    evil = "<script>alert('x')</script> & co"
    text = write_report(result, tmp_path / "evil.html", title=evil).read_text(encoding="utf-8")
    assert "<script>alert(" not in text
    assert html.escape(evil) in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in text


# ------------------------------------------------------------------------------------------ figures


def test_metrics_formatting(result) -> None:
    t = metrics_table(result)
    m = result.metrics
    assert t.loc["total_return", "value"] == f"{m['total_return'] * 100:,.2f}%"
    assert t.loc["max_drawdown", "value"].endswith("%")
    assert t.loc["win_rate", "value"] == f"{m['win_rate'] * 100:,.2f}%"
    assert t.loc["sharpe", "value"] == f"{m['sharpe']:,.2f}"
    assert t.loc["max_drawdown_duration_days", "value"] == f"{m['max_drawdown_duration_days']:,.1f} days"
    closed = result.trades["status"] == "closed"
    assert t.loc["n_trades", "value"] == str(int(closed.sum()))
    assert t.loc["n_open_trades", "value"] == str(int((~closed).sum()))
    assert t.loc["expectancy", "value"].endswith(" USDT")
    # beta is measured against buy and hold of the same symbol, and says so
    assert result.benchmark == "buy and hold BTC/USDT"
    assert t.loc["beta", "metric"] == "Beta to buy and hold BTC/USDT"
    assert t.loc["beta", "value"] == f"{m['beta']:,.2f}" and math.isfinite(m["beta"])


def test_equity_figure_matches_the_curve(result) -> None:
    fig = equity_figure(result)
    eq, dd = fig.data[0], fig.data[1]
    np.testing.assert_allclose(np.asarray(eq.y, dtype=float), result.equity.to_numpy())
    assert len(eq.x) == len(result.equity)
    # the drawdown counts the initial cash as the first peak, like the max_drawdown metric
    assert np.nanmin(np.asarray(dd.y, dtype=float)) == pytest.approx(
        result.metrics["max_drawdown"] * 100, rel=1e-9
    )
    # a decimated curve keeps both ends and the extremes
    small = equity_figure(result, max_points=500)
    y = np.asarray(small.data[0].y, dtype=float)
    assert len(y) <= 502
    assert y.max() == result.equity.max() and y.min() == result.equity.min()
    assert y[0] == result.equity.iloc[0] and y[-1] == result.equity.iloc[-1]


def test_monthly_returns_match_the_equity_curve(result) -> None:
    eq = result.equity
    fig = monthly_returns_figure(result)
    z = np.asarray(fig.data[0].z, dtype=float) / 100.0
    assert list(fig.data[0].x) == [
        "Jan",
        "Feb",
        "Mar",
        "Apr",
        "May",
        "Jun",
        "Jul",
        "Aug",
        "Sep",
        "Oct",
        "Nov",
        "Dec",
    ]
    assert z.shape == (1, 12)  # 2024 only

    def last_before(day: str) -> float:
        return float(eq[eq.index < pd.Timestamp(day, tz="UTC")].iloc[-1])

    # January starts from the initial cash; March from the last equity value of February
    jan = last_before("2024-02-01") / result.config.init_cash - 1.0
    mar = last_before("2024-04-01") / last_before("2024-03-01") - 1.0
    assert z[0, 0] == pytest.approx(jan, rel=1e-12)
    assert z[0, 2] == pytest.approx(mar, rel=1e-12)
    assert np.isnan(z[0, 9:]).all()  # the sample ends in September
    # compounded months give the total return
    table = monthly_returns(eq, result.config.init_cash)
    assert float((1 + table.stack()).prod() - 1) == pytest.approx(result.metrics["total_return"], rel=1e-9)
    assert f"{mar * 100:.1f}%" in list(fig.data[0].text[0])


def test_trades_figure_markers_and_downsampling(result, candles, indicators) -> None:
    fig = trades_figure(result, candles, indicators)
    names = [t.name for t in fig.data]
    assert names[0] == "BTC/USDT" and fig.data[0].type == "candlestick"
    assert "SMA 10" in names and "SMA 50" in names
    entries = next(t for t in fig.data if t.name == "long entry")
    exits = next(t for t in fig.data if t.name == "long exit")
    tr = result.trades
    assert len(entries.x) == len(tr[tr["direction"] == "long"])
    assert entries.marker.symbol == "triangle-up"
    np.testing.assert_allclose(np.asarray(entries.y, dtype=float), tr["entry_price"].to_numpy())
    np.testing.assert_allclose(np.asarray(entries.customdata, dtype=float)[:, 1], tr["pnl"].to_numpy())
    assert "PnL" in entries.hovertemplate
    assert len(exits.x) == int((tr["status"] == "closed").sum())
    assert len(fig.data[0].x) == len(candles)  # under the bar budget: every bar
    # over the budget: coarser bars for display, the same price range, markers unchanged
    small = trades_figure(result, candles, indicators, max_bars=1000)
    cs = small.data[0]
    assert len(cs.x) <= 1000
    assert max(cs.high) == candles["high"].max() and min(cs.low) == candles["low"].min()
    assert "resampled" in small.layout.annotations[0].text
    assert len(next(t for t in small.data if t.name == "long entry").x) == len(entries.x)


# ------------------------------------------------------------------------------------------ sweeps


@pytest.fixture(scope="module")
def swept(candles):
    return sweep(candles, "sma_cross", {"fast": [5, 10, 20], "slow": [50, 100]})


def test_sweep_heatmap_matches_a_pivot(swept) -> None:
    table = swept.table
    fig = sweep_heatmap(table, "fast", "slow", metric="sharpe")
    direct = table.pivot(index="slow", columns="fast", values="sharpe").sort_index().sort_index(axis=1)
    np.testing.assert_allclose(np.asarray(fig.data[0].z, dtype=float), direct.to_numpy())
    assert list(fig.data[0].x) == ["5", "10", "20"] and list(fig.data[0].y) == ["50", "100"]
    # percentage metrics are shown in %
    fig = sweep_heatmap(table, "fast", "slow", metric="total_return")
    direct = table.pivot(index="slow", columns="fast", values="total_return").sort_index().sort_index(axis=1)
    np.testing.assert_allclose(np.asarray(fig.data[0].z, dtype=float), direct.to_numpy() * 100)


def test_sweep_pivot_aggregates_other_parameters() -> None:
    table = pd.DataFrame(
        {
            "a": [1, 1, 1, 2, 2, 2],
            "b": [10, 10, 20, 10, 20, 20],
            "c": [0.1, 0.2, 0.1, 0.1, 0.1, 0.2],
            "sharpe": [1.0, 3.0, 2.0, -1.0, 0.5, 1.5],
        }
    )
    assert sweep_pivot(table, "a", "b", agg="max").to_numpy().tolist() == [[3.0, -1.0], [2.0, 1.5]]
    assert sweep_pivot(table, "a", "b", agg="mean").to_numpy().tolist() == [[2.0, -1.0], [2.0, 1.0]]
    with pytest.raises(ValueError, match="not a column"):
        sweep_pivot(table, "a", "nope")


def test_sweep_report(tmp_path, swept) -> None:
    path = write_sweep_report(swept, tmp_path / "sweep.html", top=4)
    text = path.read_text(encoding="utf-8")
    assert text.count(_bundle_marker()) == 1
    assert '<script src="http' not in text
    assert text.count('class="plotly-graph-div"') == 1
    assert "sma_cross" in text and "dsr_normal_approx" in text
    best = swept.best
    assert f"fast={best['params']['fast']}, slow={best['params']['slow']}" in text
    assert f"{best['dsr_normal_approx']:.3f}" in text
    top = _section(text, "top")
    assert top.count("<tr>") == 4 + 1
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.html"]


# ------------------------------------------------------------------------------------------ layering


def test_viz_does_not_import_data_or_backtest() -> None:
    code = (
        "import sys, workbench.viz; "
        "bad = [m for m in sys.modules if m.startswith(('workbench.data', 'workbench.backtest'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
