"""The HTML tear sheet of a backtest, opened as a user opens it (``file://`` in Debian's chromium, offline): every
section is shown, every chart is drawn by plotly with the result's data, and what issue 10 asked of the panels
holds in the drawn page, not only in the HTML text (tests/test_report.py checks the figures in Python)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from workbench.backtest.engine import BacktestConfig, run_backtest
from workbench.backtest.sweep import sweep
from workbench.strategies import get_strategy
from workbench.types import candles_from_frame
from workbench.viz import write_report, write_sweep_report

from .conftest import ROOT, publish_screenshot

SAMPLE = ROOT / "data" / "sample" / "binance" / "BTCUSDT_1h.csv.gz"
SECTIONS = ("summary", "metrics", "benchmark", "equity", "drawdowns", "rolling", "exposure", "price",
            "distributions", "monthly", "trades-list")  # fmt: skip

DRAWN = (
    "() => Array.from(document.querySelectorAll('.plotly-graph-div')).every(g => g._fullLayout && g.calcdata)"
)
GRAPHS = """() => Object.fromEntries(Array.from(document.querySelectorAll('.plotly-graph-div')).map(g => [
    g.closest('section').id,
    {
        svg: g.querySelectorAll('.main-svg').length,
        traces: g.data.map((t, i) => ({name: t.name || null, type: t.type, points: g.calcdata[i].length})),
        axes: Object.fromEntries(Object.keys(g._fullLayout).filter(k => /^[xy]axis\\d*$/.test(k))
            .map(k => [k, {type: g._fullLayout[k].type, title: (g._fullLayout[k].title || {}).text || null}])),
        shapes: (g._fullLayout.shapes || []).length,
    },
]))"""
# every marker of the price chart inside the x range plotly drew (the markers once floated over an empty chart)
MARKERS_OUTSIDE = """() => {
    const g = document.querySelector('#price .plotly-graph-div');
    const ax = g._fullLayout.xaxis;
    const [lo, hi] = ax.range.map(ax.r2l);
    return g._fullData.flatMap((t, i) => t.mode !== 'markers' ? [] :
        g.calcdata[i].filter(p => p.x < lo || p.x > hi).map(p => [t.name, ax.l2r(p.x)]));
}"""
# the last drawn value of a named line (calcdata: what plotly computed from the decoded arrays)
LAST_OF = """([section, name]) => {
    const g = document.querySelector('#' + section + ' .plotly-graph-div');
    const cd = g.calcdata[g._fullData.findIndex(t => t.name === name)];
    return cd[cd.length - 1].y;
}"""


@pytest.fixture(scope="module")
def backtest():
    c = candles_from_frame(pd.read_csv(SAMPLE), timeframe="1h", source="sample")
    c.attrs["symbol"] = "BTC/USDT"
    strat = get_strategy("sma_cross")(fast=10, slow=50)
    return c, strat, run_backtest(c, strat, BacktestConfig(fees=0.001, slippage=0.0005))


def open_report(page, path: Path) -> None:
    """Open a report as a file (the ``page`` fixture records console errors and stops any request that would
    leave the machine) and wait until plotly has drawn every chart."""
    page.goto(path.as_uri())
    page.wait_for_function(DRAWN)


def offline_without_errors(page) -> None:
    assert page.errors.console == [], page.errors.console
    assert page.errors.external == [], "a report must be one offline file"


def test_the_report_draws_every_panel_with_the_results_data(page, backtest, tmp_path, screenshots) -> None:
    candles, strat, res = backtest
    path = write_report(res, tmp_path / "report.html", candles, strategy=strat)
    open_report(page, path)
    for s in SECTIONS:
        assert page.locator(f"section#{s}").is_visible(), s
    g = page.evaluate(GRAPHS)
    assert set(g) == {"equity", "rolling", "exposure", "price", "distributions", "monthly"}
    assert all(v["svg"] > 0 for v in g.values()), {k: v["svg"] for k, v in g.items()}
    n = len(res.equity)

    def traces(section: str) -> dict[str | None, int]:
        return {t["name"]: t["points"] for t in g[section]["traces"]}

    # equity and drawdown, buy and hold beside it, the worst drawdowns shaded; times on date axes
    assert traces("equity") == {"strategy": n, "drawdown": n, "buy and hold": n}
    assert g["equity"]["shapes"] >= 5 and g["equity"]["axes"]["xaxis"]["type"] == "date"
    assert g["equity"]["axes"]["yaxis"] == {"type": "linear", "title": "equity"}
    assert page.evaluate(LAST_OF, ["equity", "strategy"]) == pytest.approx(
        float(res.equity.iloc[-1]), rel=1e-12
    )
    # rolling Sharpe and volatility of the strategy and of buy and hold
    assert [t["name"] for t in g["rolling"]["traces"]].count("buy and hold") == 2
    assert {a["title"] for a in g["rolling"]["axes"].values()} >= {"Sharpe", "volatility"}
    assert traces("exposure") == {"gross": n}
    # the price with the strategy's indicators, the entries, and the exits coloured by win or loss
    closed = res.trades[res.trades["status"] == "closed"]
    wins = int((closed["pnl"] > 0).sum())
    price = traces("price")
    assert price["BTC/USDT"] == n and price["fast"] == n and price["slow"] == n
    assert price["long entry"] == len(res.trades)
    assert price["winning exit"] == wins and price["losing exit"] == len(closed) - wins
    assert page.evaluate(MARKERS_OUTSIDE) == []
    close = candles["close"].to_numpy()
    for name, period in (("fast", 10), ("slow", 50)):  # the strategy's TA-Lib SMAs, as drawn
        assert page.evaluate(LAST_OF, ["price", name]) == pytest.approx(
            talib.SMA(close, period)[-1], rel=1e-12
        )
    # histograms of daily returns and of trade PnL (wins apart), and the monthly heatmap, drawn with data
    dist = traces("distributions")
    assert dist["daily returns"] > 0 and dist[f"wins ({wins})"] > 0
    assert dist[f"losses and break-evens ({len(closed) - wins})"] > 0
    assert [t["type"] for t in g["monthly"]["traces"]] == ["heatmap"]
    # the VaR labels name their confidence level; the top drawdowns table has its 5 rows
    metrics = page.locator("section#metrics").inner_text()
    assert "VaR 95%, historical" in metrics and "VaR 95%, Gaussian" in metrics
    assert page.locator("section#drawdowns tbody tr").count() == 5
    for section in ("equity", "price"):  # the two panels people look at first (docs/user_guide.md)
        shot = screenshots / f"report-{section}.png"
        page.locator(f"section#{section}").screenshot(path=str(shot))
        publish_screenshot(shot)
    offline_without_errors(page)


def test_the_log_scale_option_draws_the_equity_on_a_log_axis(page, backtest, tmp_path) -> None:
    candles, strat, res = backtest
    path = write_report(res, tmp_path / "log.html", candles, strategy=strat, log_scale=True)
    open_report(page, path)
    assert page.evaluate(GRAPHS)["equity"]["axes"]["yaxis"] == {"type": "log", "title": "equity"}
    offline_without_errors(page)


def test_the_sweep_report_draws_its_heatmap(page, backtest, tmp_path) -> None:
    """The sweep's report: the heatmap of Sharpe over (fast, slow) drawn with every combination's value, and
    the top table, offline."""
    candles, _, _ = backtest
    swept = sweep(candles, "sma_cross", {"fast": [5, 10, 20], "slow": [50, 100]})
    path = write_sweep_report(swept, tmp_path / "sweep.html", top=4)
    open_report(page, path)
    z = page.evaluate(
        "() => { const g = document.querySelector('.plotly-graph-div');"
        " return g.calcdata[0][0].z.map(row => Array.from(row)); }"
    )
    want = swept.table.pivot(index="slow", columns="fast", values="sharpe").sort_index().sort_index(axis=1)
    np.testing.assert_allclose(np.asarray(z, dtype=float), want.to_numpy(), rtol=1e-12)
    assert page.locator("section#top tbody tr").count() == 4
    offline_without_errors(page)
