"""The replay exchange against the REAL ccxt.binance client on 127.0.0.1: clock, market data, signed orders,
fills priced by the shared fill model, faults, persistence."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import ccxt
import numpy as np
import pandas as pd
import pytest

from workbench.data.sample import load_sample
from workbench.data.store import Store
from workbench.replay import FAULT_KINDS, BookParams, ReplayClock, ReplayError, ReplayExchange
from workbench.replay.market import MarketSeries
from workbench.sim.fills import market_fill

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
M5 = 300_000
START = pd.Timestamp("2024-06-01T00:02:00Z").value // 1_000_000  # 2 minutes into a 5m candle


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {
        "BTC/USDT": pd.read_csv(SAMPLE / "binance" / "BTCUSDT_5m.csv.gz"),
        "ETH/USDT": pd.read_csv(SAMPLE / "binance" / "ETHUSDT_5m.csv.gz"),
    }


@pytest.fixture
def ex(frames, tmp_path):
    x = ReplayExchange(
        frames, timeframe="5m", start=START, speed=0, timeout_fault_s=3.0, state_path=tmp_path / "state.json"
    )
    with x.run_in_thread():
        yield x


def client(x: ReplayExchange, timeout_ms: int = 10_000) -> ccxt.binance:
    c = ccxt.binance(x.ccxt_config(timeout_ms=timeout_ms))
    c.load_markets()
    return c


def signed_get(x: ReplayExchange, path: str, params: dict, *, secret: str | None = None) -> tuple[int, dict]:
    """A hand-signed request, for what ccxt would never send (stale timestamps)."""
    q = "&".join(f"{k}={v}" for k, v in params.items())
    sig = hmac.new((secret or x.secret).encode(), q.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(
        f"{x.base_url}{path}?{q}&signature={sig}", headers={"X-MBX-APIKEY": x.api_key}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ---------------------------------------------------------------------------------------------- pure parts


def test_clock_speed_pause_advance_and_end():
    wall = [1000.0]
    c = ReplayClock(10_000, speed=60, end_ms=1_000_000, wall=lambda: wall[0])
    assert c.now() == 10_000
    wall[0] += 2.0
    assert c.now() == 10_000 + 120_000
    c.pause()
    wall[0] += 5.0
    assert c.now() == 130_000 and c.paused
    assert c.advance(5_000) == 135_000
    with pytest.raises(ValueError, match="back in time"):
        c.set(100)
    c.resume()
    wall[0] += 1.0
    assert c.now() == 195_000
    c.set_speed(0)
    wall[0] += 100.0
    assert c.now() == 195_000
    c.advance(10**9)
    assert c.now() == 1_000_000 and c.finished
    held = ReplayClock(5_000, speed=10, wall=lambda: wall[0], running=False)
    wall[0] += 3.0  # e.g. loading data: the replay has not begun
    assert held.now() == 5_000
    held.begin()
    wall[0] += 1.0
    assert held.now() == 15_000


def test_price_path_reaches_high_and_low_and_closes_at_close(frames):
    m = MarketSeries("BTC/USDT", M5, frames["BTC/USDT"])
    i = int(np.searchsorted(m.ts, START))
    t0 = int(m.ts[i])
    prices = [m.price(t0 + k * 1000) for k in range(300)]
    assert prices[0] == m.o[i]
    assert max(prices) == m.h[i] and min(prices) == m.l[i]
    assert m.price(t0 + M5) == m.o[i + 1]  # the next open
    assert m.partial(i, t0 + M5 - 1)[:3] == (m.o[i], m.h[i], m.l[i])
    assert m.partial(i, t0 + M5) == (m.o[i], m.h[i], m.l[i], m.c[i], m.v[i])
    # the path's first touch of the bar's low is at 1/3 of a rising bar (or 2/3 of a falling one)
    frac = 1 / 3 if m.c[i] >= m.o[i] else 2 / 3
    touch = m.first_touch(t0, t0 + M5, float(m.l[i]), buy=True)
    assert touch is not None and abs(touch - (t0 + int(M5 * frac))) <= 1
    assert m.first_touch(t0, t0 + M5, float(m.l[i]) - 100 * m.tick, buy=True) is None


def test_setup_errors_name_the_problem(frames):
    with pytest.raises(ReplayError, match="outside the data"):
        ReplayExchange(frames, start="2030-01-01")
    with pytest.raises(ReplayError, match="unknown fault 'boom'"):
        ReplayExchange(frames, start=START, faults=["boom"])
    with pytest.raises(ReplayError, match="no candles given for DOGE/USDT"):
        ReplayExchange(frames, ["DOGE/USDT"], start=START)
    with pytest.raises(ReplayError, match="off the 3600000 ms grid"):
        ReplayExchange(frames, timeframe="1h", start=START)


# ---------------------------------------------------------------------------------------------- market data


def test_ohlcv_never_beyond_the_clock_and_the_open_candle_is_open(ex, frames):
    c = client(ex)
    truth = frames["BTC/USDT"].set_index("timestamp")
    assert c.fetch_time() == START
    rows = c.fetch_ohlcv("BTC/USDT", "5m", limit=50)
    assert len(rows) == 50
    assert rows[-1][0] == START - 120_000  # the candle open at the clock...
    last = truth.loc[rows[-1][0]]
    assert rows[-1][4] != last["close"] and rows[-1][5] < last["volume"]  # ...served as formed so far
    for r in rows[:-1]:  # closed candles exactly as recorded
        assert r[1:] == list(truth.loc[r[0], ["open", "high", "low", "close", "volume"]])
    # asking for the future returns nothing after the clock
    later = c.fetch_ohlcv("BTC/USDT", "5m", since=START, limit=10)
    assert later == []
    ex.advance(3 * M5)
    rows = c.fetch_ohlcv("BTC/USDT", "5m", since=START - 120_000, limit=10)
    assert [r[0] for r in rows] == [START - 120_000 + k * M5 for k in range(4)]
    assert rows[0][1:] == list(truth.loc[rows[0][0], ["open", "high", "low", "close", "volume"]])
    # the REST row's close time says whether the candle is still open
    raw = c.publicGetKlines({"symbol": "BTCUSDT", "interval": "5m", "limit": 1})
    assert int(raw[-1][6]) >= ex.now_ms()


def test_markets_carry_binance_filters_for_ccxt_precision(ex):
    c = client(ex)
    m = c.market("BTC/USDT")
    assert m["precision"]["price"] == 0.01 and m["precision"]["amount"] == 1e-05
    assert m["limits"]["cost"]["min"] == 5.0
    assert c.amount_to_precision("BTC/USDT", 0.0123456) == "0.01234"
    assert c.price_to_precision("BTC/USDT", 67000.123) == "67000.12"


def test_ticker_book_and_trades_follow_the_current_price(ex):
    c = client(ex)
    px = ex.markets["BTCUSDT"].price(START)
    assert c.fetch_ticker("BTC/USDT")["last"] == px
    book = c.fetch_order_book("BTC/USDT", 5)
    assert book["bids"][0][0] == px and book["asks"][0][0] == pytest.approx(px + 0.01)
    assert book["nonce"] == START // 100
    trades = c.fetch_trades("BTC/USDT", limit=5)
    assert len(trades) == 5 and all(t["timestamp"] <= START for t in trades)
    assert trades[-1]["price"] == px and trades[-1]["timestamp"] == START
    ids = [int(t["id"]) for t in trades]
    assert ids == list(range(ids[0], ids[0] + 5))
    ex.advance(60_000)
    assert c.fetch_ticker("BTC/USDT")["last"] == ex.markets["BTCUSDT"].price(START + 60_000)


# ---------------------------------------------------------------------------------------------- private API


def test_signed_endpoints_refuse_bad_signature_key_and_stale_timestamp(ex):
    bad = ccxt.binance({**ex.ccxt_config(), "secret": "0" * 64})
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        bad.fetch_balance()
    bad = ccxt.binance({**ex.ccxt_config(), "apiKey": "f" * 64})
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        bad.fetch_balance()
    now = int(time.time() * 1000)
    status, body = signed_get(ex, "/api/v3/account", {"timestamp": now})
    assert status == 200 and body["accountType"] == "SPOT"
    status, body = signed_get(ex, "/api/v3/account", {"timestamp": now - 3_600_000})
    assert (status, body["code"]) == (400, -1021)
    status, body = signed_get(ex, "/api/v3/account", {"timestamp": START})  # the replay clock passes too
    assert status == 200


def test_market_orders_are_priced_by_the_shared_fill_model(ex):
    c = client(ex)
    taker, slip = ex.venue.taker_fee, ex.venue.slippage
    px = ex.markets["BTCUSDT"].price(START)
    cash0 = c.fetch_balance()["USDT"]["free"]
    o = c.create_order("BTC/USDT", "market", "buy", 0.05)
    cash1, _, price, fee = market_fill(cash0, 0.05, px, taker, slip)
    assert o["status"] == "closed" and o["filled"] == 0.05
    assert o["average"] == pytest.approx(price, rel=1e-12) and o["fee"]["cost"] == pytest.approx(
        fee, abs=1e-8
    )
    assert o["fee"]["currency"] == "USDT"
    bal = c.fetch_balance()
    assert bal["USDT"]["free"] == pytest.approx(cash1, abs=1e-8) and bal["BTC"]["free"] == pytest.approx(0.05)
    ex.advance(60_000)
    px2 = ex.markets["BTCUSDT"].price(START + 60_000)
    s = c.create_order("BTC/USDT", "market", "sell", 0.05)
    cash2, _, price2, fee2 = market_fill(cash1, -0.05, px2, taker, slip)
    assert s["average"] == pytest.approx(price2, rel=1e-12) and s["fee"]["cost"] == pytest.approx(
        fee2, abs=1e-8
    )
    bal = c.fetch_balance()
    assert bal["USDT"]["free"] == pytest.approx(cash2, abs=1e-7) and bal["BTC"]["free"] == pytest.approx(0.0)
    trades = c.fetch_my_trades("BTC/USDT")
    assert [t["side"] for t in trades] == ["buy", "sell"] and all(
        t["takerOrMaker"] == "taker" for t in trades
    )


def test_limit_order_rests_locks_funds_and_fills_at_its_price_when_the_path_touches_it(ex):
    c = client(ex)
    m = ex.markets["BTCUSDT"]
    # a level the price reaches within the next 2 hours, below the current price
    horizon = [m.price(START + k * 10_000) for k in range(1, 720)]
    level = float(min(horizon))
    assert level < m.price(START)
    touch = m.first_touch(START, START + 720 * 10_000, level, buy=True)
    o = c.create_order("BTC/USDT", "limit", "buy", 0.02, level, {"clientOrderId": "rest-1"})
    assert o["status"] == "open" and o["clientOrderId"] == "rest-1"
    bal = c.fetch_balance()
    locked = 0.02 * level * (1 + max(ex.venue.maker_fee, ex.venue.taker_fee))
    assert bal["USDT"]["used"] == pytest.approx(locked, abs=1e-8)
    assert c.fetch_order(o["id"], "BTC/USDT")["status"] == "open"
    assert [x["id"] for x in c.fetch_open_orders("BTC/USDT")] == [o["id"]]
    ex.advance(touch - START - 1)
    assert c.fetch_order(o["id"], "BTC/USDT")["status"] == "open"
    ex.advance(1)
    done = c.fetch_order(o["id"], "BTC/USDT")
    assert done["status"] == "closed" and done["average"] == level and done["lastTradeTimestamp"] == touch
    cash, _, _, fee = market_fill(10_000.0, 0.02, level, ex.venue.maker_fee, 0.0)
    bal = c.fetch_balance()
    assert bal["USDT"]["free"] == pytest.approx(cash, abs=1e-8) and bal["USDT"]["used"] == 0
    (t,) = c.fetch_my_trades("BTC/USDT")
    assert t["takerOrMaker"] == "maker" and t["fee"]["cost"] == pytest.approx(fee, abs=1e-8)
    assert c.fetch_open_orders("BTC/USDT") == []


def test_marketable_limit_fills_at_once_as_taker_and_cancel_releases_funds(ex):
    c = client(ex)
    px = ex.markets["BTCUSDT"].price(START)
    o = c.create_order("BTC/USDT", "limit", "buy", 0.01, px + 50)
    assert o["status"] == "closed" and o["average"] == pytest.approx(px * (1 + ex.venue.slippage))
    far = c.create_order("BTC/USDT", "limit", "sell", 0.01, px * 2)
    assert c.fetch_balance()["BTC"]["used"] == pytest.approx(0.01)
    cancelled = c.cancel_order(far["id"], "BTC/USDT")
    assert cancelled["status"] == "canceled"
    assert c.fetch_balance()["BTC"] == {
        "free": pytest.approx(0.01),
        "used": 0.0,
        "total": pytest.approx(0.01),
    }
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        c.cancel_order(far["id"], "BTC/USDT")  # not open any more
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        c.fetch_order("424242", "BTC/USDT")
    with pytest.raises(ccxt.InvalidOrder, match="would immediately match"):  # LIMIT_MAKER, -2010
        c.create_order("BTC/USDT", "limit", "buy", 0.01, px + 50, {"postOnly": True})


def test_duplicate_open_client_id_is_refused_and_reusable_after_cancel(ex):
    c = client(ex)
    px = ex.markets["BTCUSDT"].price(START)
    first = c.create_order("BTC/USDT", "limit", "buy", 0.001, px - 500, {"clientOrderId": "dup-1"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        c.create_order("BTC/USDT", "limit", "buy", 0.001, px - 600, {"clientOrderId": "dup-1"})
    assert len(c.fetch_open_orders("BTC/USDT")) == 1
    by_cid = c.fetch_order(None, "BTC/USDT", {"origClientOrderId": "dup-1"})
    assert by_cid["id"] == first["id"]
    c.cancel_order(None, "BTC/USDT", {"origClientOrderId": "dup-1"})
    again = c.create_order("BTC/USDT", "limit", "buy", 0.001, px - 600, {"clientOrderId": "dup-1"})
    assert again["id"] != first["id"]
    assert c.fetch_order(None, "BTC/USDT", {"origClientOrderId": "dup-1"})["id"] == again["id"]
    assert [o["status"] for o in c.fetch_orders("BTC/USDT")] == ["canceled", "open"]


def test_balance_and_filters_are_checked(ex):
    c = client(ex)
    with pytest.raises(ccxt.InsufficientFunds):
        c.create_order("BTC/USDT", "market", "buy", 1.0)  # ~67k USDT with 10k
    with pytest.raises(ccxt.InsufficientFunds):
        c.create_order("ETH/USDT", "market", "sell", 0.1)  # no ETH
    with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):
        c.create_order("BTC/USDT", "market", "buy", 0.00002)
    status, body = signed_get(ex, "/api/v3/order", {"symbol": "BTCUSDT", "orderId": "x1", "timestamp": START})
    assert (status, body["code"]) == (400, -1100)
    assert c.fetch_balance()["USDT"]["free"] == 10_000.0


# ---------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("fault", "exc", "accepted"),
    [
        ("5xx", ccxt.ExchangeNotAvailable, False),
        ("429", ccxt.DDoSProtection, False),
        ("drop", ccxt.NetworkError, False),
        ("timeout", ccxt.RequestTimeout, False),
        ("timeout-after-accept", ccxt.RequestTimeout, True),
        ("drop-after-accept", ccxt.NetworkError, True),
        ("1007", ccxt.RequestTimeout, True),
    ],
)
def test_each_fault_reaches_ccxt_as_its_exception(ex, fault, exc, accepted):
    assert fault in FAULT_KINDS
    c = client(ex)  # a generous timeout for the calls that must succeed
    quick = client(ex, timeout_ms=1500)  # gives up before a timeout fault (3 s) answers
    ex.inject(fault, path="/api/v3/order", method="POST")
    with pytest.raises(exc):
        quick.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "f-1"})
    # the order exists at the venue exactly when the fault came after it was accepted: query, never resend
    if accepted:
        assert c.fetch_order(None, "BTC/USDT", {"origClientOrderId": "f-1"})["status"] == "closed"
    else:
        with pytest.raises(ccxt.OrderNotFound):
            c.fetch_order(None, "BTC/USDT", {"origClientOrderId": "f-1"})
    assert ex.status()["faults_queued"] == []
    assert c.fetch_time() == START  # the server keeps serving


def test_random_faults_are_seeded_and_only_when_asked(frames):
    x = ReplayExchange(frames, start=START, speed=0, fault_rate=1.0, faults=["5xx"])
    with x.run_in_thread():
        c = ccxt.binance(x.ccxt_config(timeout_ms=2000))
        with pytest.raises(ccxt.ExchangeNotAvailable):
            c.fetch_time()
    x = ReplayExchange(frames, start=START, speed=0)
    with x.run_in_thread():
        c = ccxt.binance(x.ccxt_config(timeout_ms=2000))
        assert all(c.fetch_time() == START for _ in range(20))


def test_admin_api_steps_the_clock_and_schedules_faults(ex):
    def post(path: str, body: dict) -> dict:
        req = urllib.request.Request(
            ex.base_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    st = post("/_replay/clock", {"advance_ms": 60_000})
    assert st["now_ms"] == START + 60_000 and st["paused"]
    post("/_replay/faults", {"fault": "5xx", "path": "/api/v3/time", "times": 3})
    c = ccxt.binance(ex.ccxt_config(timeout_ms=2000))
    for _ in range(3):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            c.fetch_time()
    assert c.fetch_time() == START + 60_000
    with pytest.raises(urllib.error.HTTPError) as info:
        post("/_replay/faults", {"fault": "nope"})
    assert info.value.code == 400 and "unknown fault 'nope'" in json.loads(info.value.read())["msg"]


def test_bad_requests_get_binance_errors_and_the_server_survives(ex):
    for url, code in [
        ("/api/v3/klines?symbol=BTCUSDT&interval=5m&limit=abc", -1100),
        ("/api/v3/klines?symbol=NOPE&interval=5m", -1121),
        ("/api/v3/klines?symbol=BTCUSDT", -1102),
        ("/api/v3/nowhere", -1),
    ]:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(ex.base_url + url, timeout=10)
        assert json.loads(info.value.read())["code"] == code
    req = urllib.request.Request(ex.base_url + "/api/v3/order", data=b"\xff\xfe garbage", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code in (400, 401)
    assert client(ex).fetch_time() == START


# ---------------------------------------------------------------------------------------------- persistence, store


def test_a_restart_with_persistence_keeps_orders_balances_keys_and_clock(frames, tmp_path):
    state = tmp_path / "venue.json"
    x = ReplayExchange(frames, start=START, speed=0, state_path=state)
    with x.run_in_thread():
        c = client(x)
        c.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "keep-filled"})
        px = x.markets["BTCUSDT"].price(START)
        rest = c.create_order("BTC/USDT", "limit", "buy", 0.01, px - 1000, {"clientOrderId": "keep-open"})
        x.advance(90_000)
        balances = c.fetch_balance()["USDT"]
    assert state.stat().st_mode & 0o777 == 0o600
    y = ReplayExchange(frames, start=START, speed=0, state_path=state)  # same start: the clock continues
    with y.run_in_thread():
        assert y.restored and y.api_key == x.api_key
        c = client(y)
        assert c.fetch_time() == START + 90_000
        (o,) = c.fetch_open_orders("BTC/USDT")
        assert o["id"] == rest["id"] and o["clientOrderId"] == "keep-open"
        assert c.fetch_order(None, "BTC/USDT", {"origClientOrderId": "keep-filled"})["status"] == "closed"
        assert c.fetch_balance()["USDT"] == balances
        new = c.create_order("BTC/USDT", "market", "buy", 0.001)
        assert int(new["id"]) == int(rest["id"]) + 1  # ids continue


def test_a_corrupt_or_mismatched_state_file_is_a_clear_error(frames, tmp_path):
    state = tmp_path / "venue.json"
    state.write_text("{not json")
    with pytest.raises(ReplayError, match="cannot read state file"):
        ReplayExchange(frames, start=START, state_path=state)
    state.unlink()
    x = ReplayExchange(frames, start=START, speed=0, state_path=state)
    with x.run_in_thread():
        c = client(x)
        px = x.markets["ETHUSDT"].price(START)
        c.create_order("ETH/USDT", "limit", "buy", 0.01, round(px * 0.9, 2))
    with pytest.raises(ReplayError, match="open orders on ETHUSDT, which this replay does not serve"):
        ReplayExchange(frames, ["BTC/USDT"], start=START, state_path=state)


def test_serves_candles_from_the_store(tmp_path):
    store = Store(tmp_path / "data")
    load_sample(store, SAMPLE, kinds=("candles",))
    x = ReplayExchange(store, ["ETH/USDT"], "1h", "2024-03-01", speed=0, book=BookParams(levels=5))
    with x.run_in_thread():
        c = client(x)
        assert list(c.markets) == ["ETH/USDT"]
        rows = c.fetch_ohlcv("ETH/USDT", "1h", limit=3)
        truth = store.candles("binance", "ETH/USDT", "1h", end="2024-03-01")
        assert rows[-1][0] == pd.Timestamp("2024-03-01", tz="UTC").value // 1_000_000
        assert rows[-2][1:] == list(truth.iloc[-1][["open", "high", "low", "close", "volume"]])
        assert len(c.fetch_order_book("ETH/USDT")["bids"]) == 5


def test_recorded_trades_and_book_from_the_store_are_served_and_matched(tmp_path):
    store = Store(tmp_path / "data")
    load_sample(store, SAMPLE)  # candles, and 11 minutes of BTC/USDT trades with a 1000-level book snapshot
    tape = store.read_table(store.key("trades", "binance", "BTC/USDT")).to_pandas()
    snap = store.read_table(store.key("orderbook", "binance", "BTC/USDT")).to_pandas()
    t0 = pd.Timestamp("2024-08-08T23:54:30Z").value // 1_000_000
    x = ReplayExchange(store, ["BTC/USDT"], "5m", t0, speed=0)
    with x.run_in_thread():
        c = client(x)
        seen = tape[tape["ts"] <= t0]
        got = c.fetch_trades("BTC/USDT", limit=20)
        assert [t["id"] for t in got] == list(seen["id"].iloc[-20:])
        assert [t["price"] for t in got] == list(seen["price"].iloc[-20:])
        last = float(seen["price"].iloc[-1])
        assert c.fetch_ticker("BTC/USDT")["last"] == last
        book = c.fetch_order_book("BTC/USDT", 1000)
        bids = snap[snap["side"] == "bid"].sort_values("level")
        assert len(book["bids"]) == 1000 and book["bids"][0] == [
            bids["price"].iloc[0],
            bids["amount"].iloc[0],
        ]
        o = c.create_order("BTC/USDT", "market", "buy", 0.01)
        assert o["average"] == pytest.approx(last * (1 + x.venue.slippage), rel=1e-12)
        # a resting buy fills when a recorded trade prints at or below it
        later = tape[tape["ts"] > t0]
        level = float(later["price"].iloc[:2000].min())
        hit = int(later.loc[later["price"] <= level, "ts"].iloc[0])
        rest = c.create_order("BTC/USDT", "limit", "buy", 0.01, level)
        x.advance(hit - t0 - 1)
        assert c.fetch_order(rest["id"], "BTC/USDT")["status"] == "open"
        x.advance(1)
        done = c.fetch_order(rest["id"], "BTC/USDT")
        assert done["status"] == "closed" and done["lastTradeTimestamp"] == hit and done["average"] == level
        # after the tape the trades are synthetic again, and the book too once the snapshot has aged out
        x.clock.set(int(tape["ts"].max()) + 60_000)
        after = c.fetch_trades("BTC/USDT", limit=5)
        assert all(int(t["id"]) < int(tape["id"].astype("int64").min()) for t in after)
        assert len(c.fetch_order_book("BTC/USDT")["bids"]) == x.book.levels
