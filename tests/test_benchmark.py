"""Buy and hold, the benchmark of every backtest: one definition of the curve and of beta."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import sample_candles

from workbench.backtest.benchmark import benchmark_name, buy_and_hold_curve, buy_and_hold_metrics
from workbench.backtest.engine import BacktestConfig, run_backtest
from workbench.backtest.metrics import compute_metrics
from workbench.strategies import get_strategy


def test_beta_of_a_backtest_is_to_buy_and_hold_of_its_symbols() -> None:
    btc, eth = sample_candles("BTC", n=1500), sample_candles("ETH", n=1500)
    strat = get_strategy("sma_cross")(fast=10, slow=50)
    for data, name in ((btc, "buy and hold BTC/USDT"), ({"BTC/USDT": btc, "ETH/USDT": eth}, None)):
        res = run_backtest(data, strat, BacktestConfig(fees=0.001), start=btc.index[200])
        frames = res.candles
        # by hand: 1/n of the cash in each symbol at the first open, held; the curve from the cash a bar earlier
        held = np.mean([f["close"].to_numpy() / f["open"].iloc[0] for f in frames.values()], axis=0)
        r = (
            np.diff(np.r_[res.config.init_cash, res.equity.to_numpy()])
            / np.r_[res.config.init_cash, res.equity.to_numpy()][:-1]
        )
        b = np.diff(np.r_[1.0, held]) / np.r_[1.0, held][:-1]
        want = np.cov(b, r, ddof=1)[0, 1] / np.var(b, ddof=1)
        assert res.metrics["beta"] == pytest.approx(want, rel=1e-9)
        assert res.benchmark == (name or benchmark_name(list(frames)))
        curve = pd.concat(
            [pd.Series([res.config.init_cash], index=[res.start - pd.Timedelta(1, "h")]), res.equity]
        )
        bench = buy_and_hold_curve(frames, prepend=True)
        assert compute_metrics(curve, benchmark=bench)["beta"] == pytest.approx(
            res.metrics["beta"], rel=1e-12
        )
    assert "(equal weights)" in benchmark_name(["BTC/USDT", "ETH/USDT"])


def test_buy_and_hold_metrics() -> None:
    c = sample_candles("BTC", n=800)
    m = buy_and_hold_metrics(c, c.index[100], c.index[-1], init_cash=1000.0)
    assert m["total_return"] == pytest.approx(c["close"].iloc[-1] / c["open"].iloc[100] - 1, rel=1e-12)
    assert m["final_equity"] == pytest.approx(1000.0 * c["close"].iloc[-1] / c["open"].iloc[100], rel=1e-12)
    assert m["beta"] == pytest.approx(1.0) and m["exposure"] == 1.0 and np.isnan(m["n_trades"])
