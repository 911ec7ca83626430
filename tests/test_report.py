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
    sweep_top_table,
    trades_figure,
    write_report,
    write_sweep_report,
)
from workbench.viz import tearsheet as ts

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
    # equity, rolling, exposure, price, distributions, monthly
    assert text.count('class="plotly-graph-div"') == 6
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
    sections = ("summary", "metrics", "benchmark", "equity", "drawdowns", "rolling", "exposure", "price")
    for section in (*sections, "distributions", "monthly", "trades-list"):
        assert f'<section id="{section}">' in text
    # every metric label, and its formatted value; beta (NaN without a benchmark) moves to the buy-and-hold
    # section, which computes it against buy and hold
    table = metrics_table(result)
    assert set(table.index) == set(result.metrics)
    metrics = _section(text, "metrics")
    assert "Beta to benchmark" not in metrics and "Beta to buy and hold" in _section(text, "benchmark")
    for key, row in table.drop(index="beta").iterrows():
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
    # the VaR labels name their confidence level (compute_metrics' default, else the one asked for)
    assert t.loc["var_hist", "metric"] == "VaR 95%, historical (per bar)"
    assert t.loc["cvar_param", "metric"] == "CVaR 95%, Gaussian (per bar)"
    assert metrics_table(result, var_level=0.99).loc["var_param", "metric"] == "VaR 99%, Gaussian (per bar)"


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
    wins = next(t for t in fig.data if t.name == "winning exit")
    losses = next(t for t in fig.data if t.name == "losing exit")
    tr = result.trades
    assert len(entries.x) == len(tr[tr["direction"] == "long"])
    assert entries.marker.symbol == "triangle-up"
    np.testing.assert_allclose(np.asarray(entries.y, dtype=float), tr["entry_price"].to_numpy())
    np.testing.assert_allclose(np.asarray(entries.customdata[:, 1], dtype=float), tr["pnl"].to_numpy())
    assert "PnL" in entries.hovertemplate and "exit: %{customdata[3]}" in entries.hovertemplate
    # exits coloured by the trade's outcome: green wins, red losses (and break-evens)
    closed = tr[tr["status"] == "closed"]
    assert len(wins.x) == int((closed["pnl"] > 0).sum()) and len(losses.x) == int((closed["pnl"] <= 0).sum())
    assert (np.asarray(wins.customdata[:, 1], dtype=float) > 0).all()
    assert (np.asarray(losses.customdata[:, 1], dtype=float) <= 0).all()
    assert wins.marker.color != losses.marker.color
    np.testing.assert_allclose(
        np.sort(np.asarray(wins.y, dtype=float)),
        np.sort(closed.loc[closed["pnl"] > 0, "exit_price"].to_numpy()),
    )
    assert len(fig.data[0].x) == len(candles)  # under the bar budget: every bar
    # over the budget: coarser bars for display, the same price range, markers unchanged
    small = trades_figure(result, candles, indicators, max_bars=1000)
    cs = small.data[0]
    assert len(cs.x) <= 1000
    assert max(cs.high) == candles["high"].max() and min(cs.low) == candles["low"].min()
    assert "resampled" in small.layout.annotations[0].text
    assert len(next(t for t in small.data if t.name == "long entry").x) == len(entries.x)


# ------------------------------------------------------------------------------------------ tear sheet


def test_buy_and_hold_alpha_beta_match_numpy_ols(report, result, candles) -> None:
    init = result.config.init_cash
    bench = ts.result_benchmark(result)
    # buy and hold: the initial cash bought at the first bar's open, valued at each close
    close = candles["close"].loc[result.start : result.end]
    np.testing.assert_allclose(bench.to_numpy(), init * close.to_numpy() / candles["open"].loc[result.start])
    st = ts.alpha_beta(result.equity, bench, init)
    # numpy OLS of the per-bar returns on buy and hold's
    e, b = result.equity.to_numpy(), bench.to_numpy()
    r, x = e[1:] / e[:-1] - 1, b[1:] / b[:-1] - 1
    (a, beta), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(x), x]), r, rcond=None)
    ppy = 365 * 24  # 1h bars
    assert st["beta"] == pytest.approx(beta, rel=1e-9)
    assert st["alpha"] == pytest.approx(a * ppy, rel=1e-9)
    assert st["correlation"] == pytest.approx(np.corrcoef(r, x)[0, 1], rel=1e-9)
    assert st["benchmark_return"] == pytest.approx(b[-1] / init - 1, rel=1e-12)
    assert st["excess_return"] == pytest.approx(result.metrics["total_return"] - (b[-1] / init - 1), rel=1e-9)
    # one beta everywhere: the metric, given buy and hold's prices as the benchmark, is the same number
    strat = get_strategy("sma_cross")(fast=10, slow=50)
    with_bench = run_backtest(candles, strat, result.config, benchmark=candles["close"])
    assert with_bench.metrics["beta"] == pytest.approx(st["beta"], rel=1e-9)
    # the report shows them
    _, text = report
    section = _section(text, "benchmark")
    assert f"{beta:,.2f}" in section and f"{a * ppy * 100:,.2f}%" in section
    assert f"{(b[-1] / init - 1) * 100:,.2f}%" in section
    # and the equity chart draws buy and hold beside the strategy
    fig = equity_figure(result)
    line = next(t for t in fig.data if t.name == "buy and hold")
    np.testing.assert_allclose(np.asarray(line.y, dtype=float), b)
    assert equity_figure(result, benchmark=None).data[-1].name != "buy and hold"


def test_benchmark_of_several_symbols_is_equal_weight(candles) -> None:
    other = candles.copy()
    other[["open", "high", "low", "close"]] = (
        other[["open", "high", "low", "close"]] * np.linspace(1, 2, len(other))[:, None]
    )
    idx = candles.index[100:300]
    bench = ts.benchmark_equity({"A": candles, "B": other}, idx, 1000.0)
    want = (
        500.0 * candles["close"][idx] / candles["open"][idx[0]]
        + 500.0 * other["close"][idx] / other["open"][idx[0]]
    )
    np.testing.assert_allclose(bench.to_numpy(), want.to_numpy(), rtol=1e-12)


def test_rolling_sharpe_and_volatility_match_pandas(result) -> None:
    init, w = result.config.init_cash, 240
    st = ts.rolling_stats(result.equity, w, init)
    curve = pd.concat([pd.Series([init]), pd.Series(result.equity.to_numpy())], ignore_index=True)
    r = curve.pct_change().iloc[1:].reset_index(drop=True)
    ppy = 365 * 24
    sharpe = r.rolling(w).mean() / r.rolling(w).std() * np.sqrt(ppy)
    vol = r.rolling(w).std() * np.sqrt(ppy)
    np.testing.assert_allclose(st["volatility"].to_numpy(), vol.to_numpy(), rtol=1e-9, equal_nan=True)
    ok = vol.to_numpy() > 1e-9
    np.testing.assert_allclose(st["sharpe"].to_numpy()[ok], sharpe.to_numpy()[ok], rtol=1e-9)
    assert st["sharpe"].iloc[: w - 1].isna().all() and st["sharpe"].iloc[w:].notna().any()
    # the figure draws those numbers (volatility in %), 30 days of 1h bars by default
    fig = ts.rolling_figure(result, window=w)
    np.testing.assert_allclose(
        np.asarray(fig.data[0].y, dtype=float), st["sharpe"].to_numpy(), equal_nan=True
    )
    np.testing.assert_allclose(
        np.asarray(fig.data[1].y, dtype=float), st["volatility"].to_numpy() * 100, equal_nan=True
    )
    assert ts.default_window(result.equity.index) == 720
    assert "720 bars (30.0 days)" in ts.rolling_figure(result).layout.title.text
    with pytest.raises(ValueError, match="at least 2 bars"):
        ts.rolling_stats(result.equity, 1)


def _drawdowns_by_loop(times: list, values: list[float]) -> list[dict]:
    """Drawdown episodes by walking the curve bar by bar."""
    out, peak, peak_i, cur = [], values[0], 0, None
    for i in range(1, len(values)):
        v = values[i]
        if v >= peak:
            if cur is not None:
                cur["recovery"] = times[i]
                out.append(cur)
                cur = None
            peak, peak_i = v, i
        else:
            if cur is None:
                cur = {
                    "peak": times[peak_i],
                    "trough": times[i],
                    "low": v,
                    "peak_value": peak,
                    "recovery": None,
                }
            elif v < cur["low"]:
                cur["trough"], cur["low"] = times[i], v
    if cur is not None:
        out.append(cur)
    for d in out:
        d["depth"] = d["low"] / d["peak_value"] - 1
        end = d["recovery"] if d["recovery"] is not None else times[-1]
        d["days"] = (end - d["peak"]).total_seconds() / 86400
    return sorted(out, key=lambda d: d["depth"])


def test_top_drawdowns_match_a_plain_loop(report, result) -> None:
    init = result.config.init_cash
    eq = result.equity
    times = [eq.index[0] - pd.Timedelta(hours=1), *eq.index]
    want = _drawdowns_by_loop(times, [init, *eq.to_list()])[:5]
    got = ts.drawdown_table(eq, init, top=5)
    assert len(got) == 5
    for (_, g), w in zip(got.iterrows(), want, strict=True):
        assert g["peak"] == w["peak"] and g["trough"] == w["trough"]
        assert (pd.isna(g["recovery"]) and w["recovery"] is None) or g["recovery"] == w["recovery"]
        assert g["depth"] == pytest.approx(w["depth"], rel=1e-12)
        assert g["days"] == pytest.approx(w["days"], rel=1e-12)
    assert got["depth"].iloc[0] == pytest.approx(result.metrics["max_drawdown"], rel=1e-12)
    # the longest episode's duration is the longest-drawdown metric
    every = ts.drawdown_table(eq, init, top=10**6)
    assert every["days"].max() == pytest.approx(result.metrics["max_drawdown_duration_days"], rel=1e-12)
    _, text = report
    section = _section(text, "drawdowns")
    assert section.count("<tr>") == 5 + 1
    for w in want:
        assert f"{w['depth'] * 100:,.2f}%" in section and f"{w['peak']:%Y-%m-%d %H:%M}" in section


def test_drawdown_table_of_a_curve_that_never_falls() -> None:
    idx = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")
    assert ts.drawdown_table(pd.Series([1.0, 2, 3, 4, 5], index=idx), 1.0).empty


def test_exposure_matches_positions_times_prices(result, candles) -> None:
    ex = ts.exposure(result)
    close = candles["close"].loc[result.start : result.end].to_numpy()
    units = result.positions["BTC/USDT"].to_numpy()
    eq = result.equity.to_numpy()
    want = [abs(u * c) / e for u, c, e in zip(units, close, eq, strict=True)]
    np.testing.assert_allclose(ex["gross"].to_numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(ex["net"].to_numpy(), want, rtol=1e-12)  # long only
    # invested bars are the exposure metric's share of bars
    assert float((ex["gross"] > 0).mean()) == pytest.approx(result.metrics["exposure"], rel=1e-12)
    assert ex["gross"].max() <= 1.0 + 1e-9  # fraction 1: fully invested at most
    fig = ts.exposure_figure(ex)
    np.testing.assert_allclose(np.asarray(fig.data[0].y, dtype=float), np.asarray(want) * 100, rtol=1e-12)


def test_histograms_of_daily_returns_and_trade_pnl(result) -> None:
    fig = ts.distribution_figure(result)
    eq = result.equity
    days = sorted(set(eq.index.normalize()))
    last = [float(eq[eq.index.normalize() == d].iloc[-1]) for d in days]
    prev = [result.config.init_cash, *last[:-1]]
    want = [(a / b - 1) * 100 for a, b in zip(last, prev, strict=True)]
    np.testing.assert_allclose(np.asarray(fig.data[0].x, dtype=float), want, rtol=1e-12)
    closed = result.trades[result.trades["status"] == "closed"]
    wins = next(t for t in fig.data if str(t.name).startswith("wins"))
    losses = next(t for t in fig.data if str(t.name).startswith("losses"))
    assert sorted(wins.x) == sorted(closed.loc[closed["pnl"] > 0, "pnl"])
    assert sorted(losses.x) == sorted(closed.loc[closed["pnl"] <= 0, "pnl"])
    assert wins.xbins.size == losses.xbins.size  # one binning for both
    k = wins.xbins.start / wins.xbins.size  # with an edge at 0: no bin holds both wins and losses
    assert k == pytest.approx(round(k), abs=1e-9) and wins.xbins.start <= closed["pnl"].min()
    var = -np.quantile(want, 0.05)
    assert f"daily VaR 95%: {var:.2f}%" in fig.layout.annotations[-1].text


def test_log_scale_equity(tmp_path, result) -> None:
    lin, log = equity_figure(result), equity_figure(result, log_y=True)
    assert lin.layout.yaxis.type == "linear" and log.layout.yaxis.type == "log"
    labels = [b.label for b in log.layout.updatemenus[0].buttons]
    assert labels == ["linear", "log"] and log.layout.updatemenus[0].active == 1
    text = write_report(result, tmp_path / "log.html", log_scale=True).read_text(encoding="utf-8")
    assert '"title":{"text":"equity"},"type":"log"' in text.replace(" ", "")
    text = write_report(result, tmp_path / "lin.html").read_text(encoding="utf-8")
    assert '"title":{"text":"equity"},"type":"linear"' in text.replace(" ", "")


def test_markers_stay_in_the_drawn_window(result, candles) -> None:
    tail = candles.tail(1500)
    fig = trades_figure(result, tail)
    t0, t1 = tail.index[0], tail.index[-1]
    markers = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    times = pd.to_datetime([x for t in markers for x in t.x], utc=True)
    assert len(times) and times.min() >= t0 and times.max() <= t1
    tr = result.trades
    entries = next(t for t in markers if t.name == "long entry")
    assert len(entries.x) == int(((tr["entry_time"] >= t0) & (tr["entry_time"] <= t1)).sum())
    exits = sum(len(t.x) for t in markers if "exit" in t.name)
    closed = tr["status"] == "closed"
    assert exits == int((closed & (tr["exit_time"] >= t0) & (tr["exit_time"] <= t1)).sum())
    assert list(pd.to_datetime(fig.layout.xaxis.range, utc=True)) == [t0, t1]
    # the same window by start=: the same markers, and the indicators warmed up on the candles before it
    strat = get_strategy("sma_cross")(fast=10, slow=50)
    fig2 = trades_figure(result, candles, strategy=strat, start=t0)
    assert list(pd.to_datetime(fig2.layout.xaxis.range, utc=True)) == [t0, t1]
    markers2 = [t for t in fig2.data if t.type == "scatter" and t.mode == "markers"]
    assert sorted(x for t in markers2 for x in t.x) == sorted(x for t in markers for x in t.x)
    slow = next(t for t in fig2.data if t.name == "slow")
    assert len(slow.y) == len(tail) and not np.isnan(np.asarray(slow.y, dtype=float)).any()
    want = talib.SMA(candles["close"].to_numpy(), 50)[-len(tail) :]
    np.testing.assert_allclose(np.asarray(slow.y, dtype=float), want)


def test_strategy_indicators_on_the_price_chart(result, candles) -> None:
    strat = get_strategy("sma_cross")(fast=10, slow=50)
    fig = trades_figure(result, candles, strategy=strat)
    fast = next(t for t in fig.data if t.name == "fast")
    slow = next(t for t in fig.data if t.name == "slow")
    np.testing.assert_allclose(
        np.asarray(fast.y, dtype=float), talib.SMA(candles["close"].to_numpy(), 10), equal_nan=True
    )
    np.testing.assert_allclose(
        np.asarray(slow.y, dtype=float), talib.SMA(candles["close"].to_numpy(), 50), equal_nan=True
    )
    assert fast.yaxis == "y" and slow.yaxis == "y"  # overlays: on the price
    # an oscillator goes to a panel of its own, under the price
    rsi = get_strategy("rsi_reversion")()
    res = run_backtest(candles, rsi, BacktestConfig())
    fig = trades_figure(res, candles, strategy=rsi)
    line = next(t for t in fig.data if t.name == "rsi")
    assert line.yaxis == "y2" and fig.data[0].yaxis == "y"
    np.testing.assert_allclose(
        np.asarray(line.y, dtype=float),
        talib.RSI(candles["close"].to_numpy(), rsi.params.period),
        equal_nan=True,
    )


def test_trades_list_names_the_exit_reason(tmp_path, candles) -> None:
    strat = get_strategy("sma_cross")(fast=10, slow=50)
    res = run_backtest(candles, strat, BacktestConfig(sl_stop=0.03, tp_stop=0.06))
    reasons = res.trades["exit_reason"].value_counts()
    assert {"stop_loss", "take_profit", "signal"} <= set(reasons.index)
    text = write_report(res, tmp_path / "r.html", candles, strategy=strat).read_text(encoding="utf-8")
    trades = _section(text, "trades-list")
    assert "<th>exit</th>" in trades
    assert trades.count("<td>stop loss</td>") == reasons["stop_loss"]
    assert trades.count("<td>take profit</td>") == reasons["take_profit"]
    assert "Stops" in text and "stop loss 3%, take profit 6%" in text


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


def test_sweep_top_table_is_formatted_for_people(swept) -> None:
    table = swept.table
    top = sweep_top_table(table, 4)
    assert list(top.index) == [1, 2, 3, 4] and top.index.name == "rank"
    assert list(top.columns[:2]) == ["fast", "slow"] and "total return" in top.columns
    for rank, (_, row) in enumerate(table.head(4).iterrows(), start=1):
        assert top.loc[rank, "total return"] == f"{row['total_return'] * 100:,.2f}%"
        assert top.loc[rank, "sharpe"] == f"{row['sharpe']:,.2f}"
        assert top.loc[rank, "fast"] == str(int(row["fast"]))
    assert "{" not in top.to_string()  # a table, not a dict


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
