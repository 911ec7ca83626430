"""The candle adapter and the paper broker against the backtest: same decisions bar by bar, same fill prices
and fees (with costs on), candles closed once and never the open one."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pandas as pd
import pytest
from conftest import sample_candles

from workbench.backtest.engine import BacktestConfig, run_backtest
from workbench.strategies import get_strategy
from workbench.trading.brokers.base import MarketRules
from workbench.trading.brokers.paper import PaperBroker
from workbench.trading.strategy import Bar, CandleAdapter, CandleTracker
from workbench.types import Order, OrderStatus, OrderType, Side


def load(sym: str = "BTC", n: int = 1500) -> pd.DataFrame:
    return sample_candles(sym, n=n)


def rows(df: pd.DataFrame) -> list[list[float]]:
    ts = ((df.index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ms")).to_numpy()
    return [
        [int(t), *map(float, r)]
        for t, r in zip(ts, df[["open", "high", "low", "close", "volume"]].to_numpy(), strict=True)
    ]


def test_tracker_closes_a_candle_once_when_a_later_one_is_seen_or_by_the_clock() -> None:
    tr = CandleTracker("BTC/USDT", "1h")
    h = 3_600_000
    assert tr.update([[0, 1, 2, 0.5, 1.5, 10]]) == []  # still open
    assert tr.update([[0, 1, 2.5, 0.5, 1.7, 12]]) == []  # an update of the open candle
    out = tr.update([[0, 1, 2.5, 0.5, 1.8, 13], [h, 1.8, 1.9, 1.7, 1.75, 1]])
    assert [b.ts for b in out] == [0] and out[0].close == 1.8 and out[0].closed
    assert tr.update([[0, 9, 9, 9, 9, 9]]) == []  # never twice, never rewritten
    assert tr.close_by_clock(2 * h - 1) == []
    (b,) = tr.close_by_clock(2 * h)
    assert b.ts == h and tr.open_candle() is None
    with pytest.raises(ValueError, match="grid"):
        tr.update([[h + 5, 1, 1, 1, 1, 1]])


@pytest.mark.parametrize("name", ["sma_cross", "bollinger", "rsi_reversion", "breakout"])
def test_adapter_decides_like_the_backtest(name) -> None:
    """Fed the candles one by one, the adapter's orders equal the backtest's fills (times, sides, amounts),
    sized at the next bar's open against the same portfolio."""
    c = load()
    strat = get_strategy(name)()
    cfg = BacktestConfig(fees=0.001, slippage=0.0005)
    start = 800
    bt = run_backtest(c, strat, cfg, start=c.index[start])
    ad = CandleAdapter(strat, ["BTC/USDT"], "1h")
    bars = [Bar("BTC/USDT", r[0], *r[1:6]) for r in rows(c)]
    ad.seed("BTC/USDT", bars[start - ad.warmup : start])
    cash, units = cfg.init_cash, 0.0
    got = []
    # the decision on the last seeded bar executes at the open of the first simulated bar, as in the backtest
    for t in range(start, len(bars)):
        prev_bar = bars[t - 1].ts
        if t > start:
            ad.add(bars[t - 1])
        intents = ad.decide(
            prev_bar, positions={"BTC/USDT": units}, cash=cash, opens={"BTC/USDT": bars[t].open}
        )
        for it in intents:
            d = it.amount if it.side is Side.BUY else -it.amount
            p = it.ref_price * (1 + cfg.slippage) if d > 0 else it.ref_price * (1 - cfg.slippage)
            if d > 0 and d * p * (1 + cfg.fees) > cash:
                d = cash / (p * (1 + cfg.fees))
            cash -= d * p + abs(d) * p * cfg.fees
            units += d
            got.append((bars[t].ts, "buy" if d > 0 else "sell", abs(d), p))
    want = bt.fills()
    assert len(got) == len(want) >= 4
    for g, w in zip(got, want, strict=True):
        assert g[0] == w["timestamp"] and g[1] == w["side"]
        assert math.isclose(g[2], w["amount"], rel_tol=1e-9) and math.isclose(g[3], w["price"], rel_tol=1e-12)
    eq = cash + units * c["close"].iloc[-1]
    assert math.isclose(eq, bt.equity.iloc[-1], rel_tol=1e-9)


def test_paper_broker_prices_like_the_shared_fill_model() -> None:
    rules = {"BTC/USDT": MarketRules("BTC/USDT", amount_step=0.00001, price_step=0.01, min_notional=5.0)}
    now = [1_000]
    fills = []
    b = PaperBroker(rules, {"USDT": 10_000.0}, taker_fee=0.001, maker_fee=0.0005, slippage=0.0005,
                    clock=lambda: now[0], on_fill=lambda f, o: fills.append(f))  # fmt: skip
    b.on_price("BTC/USDT", last=50_000.0)

    async def go():
        b.set_reference("BTC/USDT", 50_000.0)
        o = await b.submit(Order("c1", "BTC/USDT", Side.BUY, OrderType.MARKET, 0.1))
        assert o.status is OrderStatus.FILLED
        f = fills[-1]
        assert math.isclose(f.price, 50_000 * 1.0005) and math.isclose(f.fee, 0.1 * f.price * 0.001)
        # a buy larger than the cash is cut to what the cash pays, fee included, then expires
        o2 = await b.submit(Order("c2", "BTC/USDT", Side.BUY, OrderType.MARKET, 1.0))
        assert o2.status is OrderStatus.EXPIRED and 0 < o2.filled < 1.0
        assert b.balances["USDT"] >= 0 and b.balances["USDT"] < 60
        # a resting limit sell fills at its price with the maker fee when the market trades through it
        o3 = await b.submit(Order("c3", "BTC/USDT", Side.SELL, OrderType.LIMIT, 0.05, price=51_000.0))
        assert o3.status is OrderStatus.ACCEPTED
        b.on_price("BTC/USDT", last=50_900, high=50_950, low=50_800)
        assert (await b.fetch_order(o3)).status is OrderStatus.ACCEPTED
        b.on_price("BTC/USDT", last=51_050, high=51_100, low=50_900, volume=0.02)  # partial: 0.02 traded
        part = await b.fetch_order(o3)
        assert part.status is OrderStatus.PARTIALLY_FILLED and math.isclose(part.filled, 0.02)
        assert fills[-1].price == 51_000.0 and math.isclose(fills[-1].fee, 0.02 * 51_000 * 0.0005)
        c = await b.cancel(part)
        assert c.status is OrderStatus.CANCELED

    asyncio.run(go())
    base = sum(f.signed_amount for f in fills)
    assert math.isclose(b.balances["BTC"], base)
    cash = 10_000 - sum(f.signed_amount * f.price + f.fee for f in fills)
    assert math.isclose(b.balances["USDT"], cash, rel_tol=1e-12)
    assert np.isfinite(cash)
