"""The replay exchange's websocket streams against the REAL ccxt.pro client (and ccxt.async_support orders)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import ccxt
import ccxt.async_support as accxt
import ccxt.pro as ccxtpro
import pandas as pd
import pytest

from workbench.replay import ReplayExchange

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "binance"
M5 = 300_000
START = pd.Timestamp("2024-06-01T00:02:00Z").value // 1_000_000
WAIT = 20  # generous: a stream event is due within 0.1 s of a clock change


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "BTCUSDT_5m.csv.gz")


@pytest.fixture
def ex(btc):
    x = ReplayExchange({"BTC/USDT": btc}, timeframe="5m", start=START, speed=0)
    with x.run_in_thread():
        yield x


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def pro(x: ReplayExchange):
    c = ccxtpro.binance(x.ccxt_config(timeout_ms=5000))
    await c.load_markets()
    return c


def test_watch_ohlcv_pushes_the_open_candle_then_each_closed_one(ex, btc):
    truth = btc.set_index("timestamp")
    bar = START - 120_000

    async def main():
        c = await pro(ex)
        try:
            first = await asyncio.wait_for(c.watch_ohlcv("BTC/USDT", "5m"), WAIT)
            assert first[-1][0] == bar and first[-1][4] == ex.markets["BTCUSDT"].price(START)
            assert first[-1][5] < truth.loc[bar, "volume"]
            ex.advance(M5)  # the bar closes, the next one opens
            seen: dict[int, list] = {}
            while bar + M5 not in seen:
                for row in await asyncio.wait_for(c.watch_ohlcv("BTC/USDT", "5m"), WAIT):
                    seen[row[0]] = row
                # ccxt resolves a watch with the message that arrives after the call; an update that came in
                # between sits in its cache, so nudge the clock for the next push
                ex.advance(1000)
            assert seen[bar][1:] == list(truth.loc[bar, ["open", "high", "low", "close", "volume"]])
            nxt = seen[bar + M5]
            assert nxt[1] == truth.loc[bar + M5, "open"] and nxt[5] < truth.loc[bar + M5, "volume"]
        finally:
            await c.close()

    run(main())


def test_raw_kline_stream_marks_open_and_closed(ex):
    import aiohttp

    async def main():
        async with aiohttp.ClientSession() as s, s.ws_connect(ex.ws_url + "/0") as ws:
            await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@kline_5m"], "id": 7})
            got = []
            while len(got) < 1:
                msg = await asyncio.wait_for(ws.receive_json(), WAIT)
                if msg.get("id") == 7:
                    assert msg == {"result": None, "id": 7}
                    continue
                got.append(msg)
            assert got[0]["e"] == "kline" and got[0]["k"]["x"] is False
            ex.advance(M5)
            closed = None
            while closed is None:
                msg = await asyncio.wait_for(ws.receive_json(), WAIT)
                if msg["k"]["x"]:
                    closed = msg
            assert closed["k"]["t"] == START - 120_000
            await ws.send_str("not json")
            err = await asyncio.wait_for(ws.receive_json(), WAIT)
            while "error" not in err:
                err = await asyncio.wait_for(ws.receive_json(), WAIT)
            assert err["error"]["code"] == 3

    run(main())


def test_watch_trades_ticker_and_bids_asks(ex):
    m = ex.markets["BTCUSDT"]

    async def main():
        c = await pro(ex)
        try:
            pending = asyncio.ensure_future(c.watch_trades("BTC/USDT"))
            while "btcusdt@trade" not in ex.status()["streams"]:  # subscribed before the clock moves
                await asyncio.sleep(0.02)
            ex.advance(20_000)
            trades = await asyncio.wait_for(pending, WAIT)
            assert trades and all(START < t["timestamp"] <= START + 20_000 for t in trades)
            assert trades[-1]["price"] == m.price(trades[-1]["timestamp"])
            ticker = await asyncio.wait_for(c.watch_ticker("BTC/USDT"), WAIT)
            assert ticker["last"] == m.price(ex.now_ms())
            ba = await asyncio.wait_for(c.watch_bids_asks(["BTC/USDT"]), WAIT)
            assert ba["BTC/USDT"]["bid"] == m.price(ex.now_ms())
            assert ba["BTC/USDT"]["ask"] == pytest.approx(m.price(ex.now_ms()) + m.tick)
        finally:
            await c.close()

    run(main())


def test_watch_order_book_stays_in_sync_as_the_clock_runs(ex):
    m = ex.markets["BTCUSDT"]

    async def main():
        c = await pro(ex)
        try:
            book = await asyncio.wait_for(c.watch_order_book("BTC/USDT"), WAIT)
            assert book["bids"][0][0] == m.price(ex.now_ms())
            for _ in range(5):
                ex.advance(7_000)
                target = ex.now_ms() // 100
                while book["nonce"] < target:  # ccxt raises ChecksumError on a gap in the update ids
                    book = await asyncio.wait_for(c.watch_order_book("BTC/USDT"), WAIT)
                assert book["bids"][0][0] == m.price(ex.now_ms())
                assert book["asks"][0][0] == pytest.approx(m.price(ex.now_ms()) + m.tick)
                assert len(book["bids"]) == len(book["asks"]) == ex.book.levels
        finally:
            await c.close()

    run(main())


def test_a_dropped_websocket_raises_network_error_and_the_next_watch_reconnects(ex):
    async def main():
        c = await pro(ex)
        try:
            await asyncio.wait_for(c.watch_ohlcv("BTC/USDT", "5m"), WAIT)
            assert ex.drop_websockets() == 1
            ex.advance(1000)
            with pytest.raises(ccxt.NetworkError):
                for _ in range(50):  # an update already queued may arrive first
                    await asyncio.wait_for(c.watch_ohlcv("BTC/USDT", "5m"), WAIT)
            ex.advance(1000)
            rows = await asyncio.wait_for(c.watch_ohlcv("BTC/USDT", "5m"), WAIT)
            assert rows[-1][0] == START - 120_000
        finally:
            await c.close()

    run(main())


def test_async_client_orders_and_a_drop_after_accept(ex):
    async def main():
        c = accxt.binance(ex.ccxt_config(timeout_ms=5000))
        try:
            await c.load_markets()
            ex.inject("drop-after-accept", path="/api/v3/order", method="POST")
            with pytest.raises(ccxt.NetworkError):  # aiohttp: ServerDisconnectedError -> ExchangeNotAvailable
                await c.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "a-1"})
            got = await c.fetch_order(None, "BTC/USDT", {"origClientOrderId": "a-1"})
            assert got["status"] == "closed"
            assert len(ex.venue.orders) == 1  # the client did not resend the POST
        finally:
            await c.close()

    run(main())
