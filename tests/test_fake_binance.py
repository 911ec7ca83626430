"""The fake Binance server against the REAL ccxt.binance (sync) client, offline."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import ccxt
import ccxt.async_support as accxt
import numpy as np
import pandas as pd
import pytest
from fake_binance import FakeBinance, book_from_csv, synthetic_funding, trades_from_csv

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "binance"
TRADES_CSV = SAMPLE / "ticks" / "BTCUSDT_trades_2024-08-08T2354.csv.gz"
DEPTH_CSV = SAMPLE / "ticks" / "BTCUSDT_depth_snapshot_2024-08-08T2354.csv.gz"
HOUR = 3_600_000
N_CANDLES = 600  # slice of the real sample used by the tests
NOW_INDEX = 400  # server time sits inside candle 400: candles 0..399 are closed


@pytest.fixture(scope="module")
def btc_1h() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "BTCUSDT_1h.csv.gz").iloc[:N_CANDLES].reset_index(drop=True)


@pytest.fixture(scope="module")
def eth_1h() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "ETHUSDT_1h.csv.gz").iloc[:N_CANDLES].reset_index(drop=True)


@pytest.fixture(scope="module")
def raw_trades() -> pd.DataFrame:
    return pd.read_csv(TRADES_CSV)


@pytest.fixture(scope="module")
def raw_depth() -> pd.DataFrame:
    return pd.read_csv(DEPTH_CSV)


@pytest.fixture(scope="module")
def funding(btc_1h: pd.DataFrame) -> pd.DataFrame:
    return synthetic_funding(btc_1h)


@pytest.fixture
def now_ms(btc_1h: pd.DataFrame) -> int:
    return int(btc_1h["timestamp"].iloc[NOW_INDEX]) + HOUR // 2


@pytest.fixture
def fake(btc_1h, eth_1h, raw_trades, raw_depth, funding, now_ms):
    server = FakeBinance(
        candles={("BTC/USDT", "1h"): btc_1h, ("ETH/USDT", "1h"): eth_1h},
        trades={"BTC/USDT": trades_from_csv(TRADES_CSV)},
        books={"BTC/USDT": book_from_csv(DEPTH_CSV)},
        funding={"BTC/USDT:USDT": funding},
        server_time_ms=now_ms,
    )
    with server:
        yield server


@pytest.fixture
def ex(fake: FakeBinance) -> ccxt.binance:
    exchange = ccxt.binance(fake.ccxt_config())
    exchange.load_markets()
    fake.requests.clear()
    return exchange


def truth_rows(df: pd.DataFrame) -> list[list]:
    return [
        [int(t), float(o), float(h), float(lo), float(c), float(v)]
        for t, o, h, lo, c, v in df[["timestamp", "open", "high", "low", "close", "volume"]].itertuples(
            index=False
        )
    ]


# ---------------------------------------------------------------- markets and time


def test_load_markets_spot_only_is_a_single_call(btc_1h, eth_1h):
    with FakeBinance(candles={("BTC/USDT", "1h"): btc_1h, ("ETH/USDT", "1h"): eth_1h}) as fake:
        cfg = fake.ccxt_config()
        assert cfg["options"]["fetchMarkets"] == {"types": ["spot"]}
        assert cfg["enableRateLimit"] is False and cfg["timeout"] == 2000
        ex = ccxt.binance(cfg)
        markets = ex.load_markets()
        assert fake.paths() == ["/api/v3/exchangeInfo"]
        assert {"BTC/USDT", "ETH/USDT"} <= set(markets)
        btc = markets["BTC/USDT"]
        assert btc["spot"] and btc["active"] and btc["id"] == "BTCUSDT"
        assert btc["precision"]["price"] == 0.01 and btc["precision"]["amount"] == 1e-05
        assert btc["limits"]["cost"]["min"] == 5.0


def test_ccxt_config_points_every_url_at_loopback(fake: FakeBinance):
    urls = fake.ccxt_config()["urls"]
    seen: list[str] = []

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, str):
            seen.append(v)

    walk(urls)
    assert len(seen) > 30
    port = fake.base_url.rsplit(":", 1)[1]
    assert all(u.startswith(("http://127.0.0.1:", "ws://127.0.0.1:")) and f":{port}/" in u for u in seen)
    assert urls["api"]["public"] == fake.base_url + "/api/v3"
    assert urls["api"]["fapiPublic"] == fake.base_url + "/fapi/v1"
    assert urls["api"]["ws"]["spot"] == "ws://127.0.0.1:" + port + "/ws"


def test_load_markets_with_funding_adds_the_linear_perp(fake: FakeBinance):
    ex = ccxt.binance(fake.ccxt_config())
    markets = ex.load_markets()
    assert fake.paths() == ["/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo"]
    perp = markets["BTC/USDT:USDT"]
    assert perp["swap"] and perp["linear"] and perp["settle"] == "USDT" and perp["id"] == "BTCUSDT"
    assert markets["BTC/USDT"]["spot"] and markets["ETH/USDT"]["spot"]
    assert "ETH/USDT:USDT" not in markets


def test_fetch_time_is_server_time(fake: FakeBinance, ex: ccxt.binance, now_ms: int):
    assert ex.fetch_time() == now_ms
    fake.server_time_ms = now_ms + 12_345
    assert ex.fetch_time() == now_ms + 12_345


# ---------------------------------------------------------------- klines


def test_fetch_ohlcv_paginates_to_the_exact_truth_and_stops_at_server_time(fake, ex, btc_1h, now_ms):
    since = int(btc_1h["timestamp"].iloc[0])
    got: list[list] = []
    while True:
        page = ex.fetch_ohlcv("BTC/USDT", "1h", since=since, limit=150)
        if not page:
            break
        got += page
        since = page[-1][0] + HOUR
    assert got == truth_rows(btc_1h.iloc[:NOW_INDEX])
    assert all(r[0] + HOUR <= now_ms for r in got)
    klines = [q for p, q in fake.requests if p == "/api/v3/klines"]
    assert len(klines) == 4  # 150 + 150 + 100 + empty
    assert klines[0] == {
        "interval": "1h",
        "limit": "150",
        "symbol": "BTCUSDT",
        "startTime": str(btc_1h.timestamp[0]),
    }


def test_fetch_ohlcv_latest_and_until(ex, btc_1h):
    # no since: the latest closed candles
    assert ex.fetch_ohlcv("BTC/USDT", "1h", limit=5) == truth_rows(btc_1h.iloc[NOW_INDEX - 5 : NOW_INDEX])
    # since + until: inclusive window
    ts = btc_1h["timestamp"]
    page = ex.fetch_ohlcv("BTC/USDT", "1h", since=int(ts[10]), params={"until": int(ts[19])})
    assert page == truth_rows(btc_1h.iloc[10:20])
    # a window entirely in the future of server time is empty
    assert ex.fetch_ohlcv("BTC/USDT", "1h", since=int(ts[NOW_INDEX + 10]), limit=10) == []


def test_full_kline_row_shape(ex):
    raw = ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "1h", "limit": 2})
    assert len(raw) == 2
    row = raw[-1]
    assert len(row) == 12 and isinstance(row[0], int) and isinstance(row[6], int) and isinstance(row[8], int)
    assert row[6] == row[0] + HOUR - 1
    assert all(isinstance(row[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10, 11))


def test_open_candle(btc_1h, now_ms):
    ts = btc_1h["timestamp"]
    with FakeBinance(candles={("BTC/USDT", "1h"): btc_1h}, server_time_ms=now_ms, open_candle=True) as fake:
        ex = ccxt.binance(fake.ccxt_config())
        page = ex.fetch_ohlcv("BTC/USDT", "1h", since=int(ts[NOW_INDEX - 3]), limit=10)
        assert [r[0] for r in page] == [int(t) for t in ts[NOW_INDEX - 3 : NOW_INDEX + 1]]
        assert page[:-1] == truth_rows(btc_1h.iloc[NOW_INDEX - 3 : NOW_INDEX])
        partial, final = page[-1], truth_rows(btc_1h.iloc[[NOW_INDEX]])[0]
        assert partial[1] == final[1]  # same open
        assert partial[4] != final[4] and partial[5] < final[5]  # close and volume still forming
        assert final[3] <= partial[3] <= partial[2] <= final[2]  # inside the final range
        # once the clock passes the candle's close, it is final and the next one is open
        fake.server_time_ms = int(ts[NOW_INDEX + 1]) + 60_000
        page = ex.fetch_ohlcv("BTC/USDT", "1h", since=int(ts[NOW_INDEX]), limit=10)
        assert page[0] == final and page[1][0] == int(ts[NOW_INDEX + 1]) and len(page) == 2
    # without open_candle the forming candle never shows
    with FakeBinance(candles={("BTC/USDT", "1h"): btc_1h}, server_time_ms=now_ms) as fake:
        ex = ccxt.binance(fake.ccxt_config())
        page = ex.fetch_ohlcv("BTC/USDT", "1h", since=int(ts[NOW_INDEX - 3]), limit=10)
        assert page[-1][0] == int(ts[NOW_INDEX - 1])
        fake.server_time_ms = int(ts[NOW_INDEX])  # exactly at an open: that candle is still open
        page = ex.fetch_ohlcv("BTC/USDT", "1h", since=int(ts[NOW_INDEX - 3]), limit=10)
        assert page[-1][0] == int(ts[NOW_INDEX - 1])


def test_klines_errors(fake, ex):
    with pytest.raises(ccxt.BadSymbol):
        ex.publicGetKlines({"symbol": "NOPEUSDT", "interval": "1h"})
    with pytest.raises(ccxt.BadRequest):
        ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "7m"})
    with pytest.raises(ccxt.BadSymbol):  # ccxt refuses a symbol that exchangeInfo does not list
        ex.fetch_ohlcv("XRP/USDT", "1h")
    assert ex.fetch_ohlcv("BTC/USDT", "4h") == []  # valid interval, no data
    assert [p for p, _ in fake.requests] == ["/api/v3/klines"] * 3


def test_unknown_path_is_a_logged_404(fake, ex):
    with pytest.raises(ccxt.ExchangeError) as info:
        ex.sapiGetSystemStatus()
    assert type(info.value) is ccxt.ExchangeError
    assert fake.requests[-1] == ("/sapi/v1/system/status", {})


# ---------------------------------------------------------------- faults

FAULT_EXCEPTIONS = [
    ("http_429", ccxt.DDoSProtection),
    ("http_418", ccxt.DDoSProtection),
    ("rate_limit_1003", ccxt.DDoSProtection),  # 429 wins over the -1003 body
    ("rate_limit_1003_400", ccxt.RateLimitExceeded),
    ("http_500", ccxt.ExchangeNotAvailable),
    ("http_502", ccxt.ExchangeNotAvailable),
    ("http_503", ccxt.ExchangeNotAvailable),
    ("http_504", ccxt.RequestTimeout),
    ("timeout", ccxt.RequestTimeout),
    ("disconnect", ccxt.NetworkError),
]


@pytest.mark.parametrize(("fault", "exc_class"), FAULT_EXCEPTIONS, ids=[f for f, _ in FAULT_EXCEPTIONS])
def test_fault_maps_to_ccxt_exception_then_recovers(fake, btc_1h, fault, exc_class):
    ex = ccxt.binance(fake.ccxt_config(timeout_ms=1000))
    ex.load_markets()
    fake.timeout_fault_s = 1.5
    since = int(btc_1h["timestamp"].iloc[0])
    fake.inject(fault)
    assert fake.fault_count() == 1
    with pytest.raises(exc_class) as info:
        ex.fetch_ohlcv("BTC/USDT", "1h", since=since, limit=5)
    assert type(info.value) is exc_class
    assert isinstance(info.value, ccxt.NetworkError)  # all retryable
    assert fake.fault_count() == 0
    assert ex.fetch_ohlcv("BTC/USDT", "1h", since=since, limit=5) == truth_rows(btc_1h.iloc[:5])


def test_rate_limit_exceeded_is_not_ddos_protection():
    # ccxt 4.5: siblings under NetworkError, so `except DDoSProtection` misses RateLimitExceeded
    assert not issubclass(ccxt.RateLimitExceeded, ccxt.DDoSProtection)
    assert issubclass(ccxt.RateLimitExceeded, ccxt.NetworkError)


def test_malformed_json_does_not_raise_in_ccxt(fake, ex, btc_1h):
    since = int(btc_1h["timestamp"].iloc[0])
    fake.inject("malformed_json")
    assert ex.fetch_ohlcv("BTC/USDT", "1h", since=since, limit=5) == []  # silently empty!
    assert ex.fetch_ohlcv("BTC/USDT", "1h", since=since, limit=5) == truth_rows(btc_1h.iloc[:5])
    fake.inject("malformed_json", path="/api/v3/time")
    assert ex.fetch_time() is None
    fake.inject("malformed_json", path="/api/v3/depth")
    book = ex.fetch_order_book("BTC/USDT", 5)
    assert book["bids"] == [] and book["asks"] == []


def test_duplicate_candles_reach_the_caller(fake, ex, btc_1h):
    since = int(btc_1h["timestamp"].iloc[0])
    fake.inject("duplicate_candles")
    page = ex.fetch_ohlcv("BTC/USDT", "1h", since=since, limit=10)
    stamps = [r[0] for r in page]
    assert len(stamps) == 10 and len(set(stamps)) < 10  # ccxt cut the page at `limit`
    assert sorted(set(map(tuple, page))) == [tuple(r) for r in truth_rows(btc_1h.iloc[: len(set(stamps))])]
    fake.inject("duplicate_candles")
    raw = ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "1h", "startTime": since, "limit": 10})
    assert len(raw) == 13


def test_out_of_order_is_sorted_by_ccxt_but_shuffled_on_the_wire(fake, ex, btc_1h):
    since = int(btc_1h["timestamp"].iloc[0])
    fake.inject("out_of_order")
    raw = ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "1h", "startTime": since, "limit": 10})
    stamps = [r[0] for r in raw]
    assert stamps != sorted(stamps) and sorted(stamps) == list(btc_1h.timestamp[:10])
    fake.inject("out_of_order")
    assert ex.fetch_ohlcv("BTC/USDT", "1h", since=since, limit=10) == truth_rows(btc_1h.iloc[:10])


def test_faults_are_per_path_and_counted(fake, ex, btc_1h):
    fake.inject("http_500", path="/api/v3/depth", times=2)
    fake.inject("http_503")
    assert fake.fault_count() == 3
    assert ex.fetch_time() is not None  # other paths are untouched
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_ohlcv("BTC/USDT", "1h", limit=2)
    assert fake.fault_count() == 2
    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            ex.fetch_order_book("BTC/USDT", 5)
    assert fake.fault_count() == 0
    assert len(ex.fetch_order_book("BTC/USDT", 5)["bids"]) == 5
    with pytest.raises(ValueError):
        fake.inject("no_such_fault")


def test_delay_s_slows_klines_only(fake, ex):
    fake.delay_s = 0.3
    t0 = time.monotonic()
    ex.fetch_ohlcv("BTC/USDT", "1h", limit=2)
    assert time.monotonic() - t0 >= 0.3
    t0 = time.monotonic()
    ex.fetch_time()
    assert time.monotonic() - t0 < 0.3


# ---------------------------------------------------------------- trades, book, tickers, funding


def test_fetch_trades_since_uses_agg_trades(fake, ex, raw_trades):
    fake.server_time_ms = int(raw_trades["trade_ts_ms"].max()) + 60_000
    since = int(raw_trades["trade_ts_ms"].iloc[100])
    trades = ex.fetch_trades("BTC/USDT", since=since, limit=200)
    path, query = fake.requests[-1]
    assert path == "/api/v3/aggTrades"
    assert query["startTime"] == str(since) and query["endTime"] == str(since + HOUR)
    expect = raw_trades[raw_trades["trade_ts_ms"] >= since].sort_values("trade_id").iloc[:200]
    assert [int(t["id"]) for t in trades] == list(expect["trade_id"])
    assert [t["timestamp"] for t in trades] == list(expect["trade_ts_ms"])
    assert [t["price"] for t in trades] == list(expect["price"])
    assert [t["amount"] for t in trades] == list(expect["qty"])
    assert [t["side"] for t in trades] == ["sell" if m else "buy" for m in expect["is_buyer_maker"]]


def test_agg_trades_rules_and_server_time(fake, ex, raw_trades):
    fake.server_time_ms = int(raw_trades["trade_ts_ms"].max()) + 60_000
    t0 = int(raw_trades["trade_ts_ms"].iloc[0])
    with pytest.raises(ccxt.BadRequest):  # Binance: startTime..endTime at most 1 hour
        ex.publicGetAggTrades({"symbol": "BTCUSDT", "startTime": t0, "endTime": t0 + HOUR + 1})
    by_id = ex.publicGetAggTrades({"symbol": "BTCUSDT", "fromId": int(raw_trades.trade_id[50]), "limit": 3})
    assert [r["a"] for r in by_id] == list(raw_trades.trade_id[50:53])
    assert set(by_id[0]) == {"a", "p", "q", "f", "l", "T", "m", "M"}
    # nothing after server time: "now" in the middle of the tick sample
    mid = int(raw_trades["trade_ts_ms"].iloc[len(raw_trades) // 2])
    fake.server_time_ms = mid
    latest = ex.fetch_trades("BTC/USDT", limit=50)
    assert len(latest) == 50 and max(t["timestamp"] for t in latest) <= mid
    assert latest[-1]["timestamp"] == int(raw_trades["trade_ts_ms"][raw_trades["trade_ts_ms"] <= mid].max())


def test_fetch_order_book(fake, ex, raw_depth):
    book = ex.fetch_order_book("BTC/USDT", 10)
    assert fake.requests[-1] == ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "10"})
    bids = raw_depth[raw_depth.side == "bid"].sort_values("level").iloc[:10]
    asks = raw_depth[raw_depth.side == "ask"].sort_values("level").iloc[:10]
    assert book["bids"] == bids[["price", "qty"]].to_numpy().tolist()
    assert book["asks"] == asks[["price", "qty"]].to_numpy().tolist()
    assert book["nonce"] == int(raw_depth["last_update_id"].iloc[0])
    assert len(ex.fetch_order_book("BTC/USDT")["bids"]) == 100  # Binance default limit


def test_fetch_tickers(fake, ex, btc_1h, eth_1h):
    tickers = ex.fetch_tickers(["BTC/USDT", "ETH/USDT"])
    assert set(tickers) == {"BTC/USDT", "ETH/USDT"}
    path, query = fake.requests[-1]
    assert path == "/api/v3/ticker/24hr" and json.loads(query["symbols"]) == ["BTCUSDT", "ETHUSDT"]
    for sym, df in (("BTC/USDT", btc_1h), ("ETH/USDT", eth_1h)):
        day = df.iloc[NOW_INDEX - 24 : NOW_INDEX]  # the last 24 closed hourly candles
        t = tickers[sym]
        assert t["last"] == df.close[NOW_INDEX - 1] and t["open"] == day.open.iloc[0]
        assert t["high"] == day.high.max() and t["low"] == day.low.min()
        assert t["baseVolume"] == pytest.approx(day.volume.sum())
        assert t["timestamp"] == int(df.timestamp[NOW_INDEX]) - 1
        assert t["bid"] < t["ask"]
    assert set(ex.fetch_tickers()) == {"BTC/USDT", "ETH/USDT"}


def test_fetch_funding_rate_history(fake, ex, funding, now_ms):
    since = int(funding.timestamp[3])
    rows = ex.fetch_funding_rate_history("BTC/USDT:USDT", since=since, limit=10)
    path, query = fake.requests[-1]
    assert path == "/fapi/v1/fundingRate" and query["symbol"] == "BTCUSDT"
    expect = funding.iloc[3:13]
    assert [r["timestamp"] for r in rows] == list(expect.timestamp)
    assert [r["fundingRate"] for r in rows] == list(expect.rate)
    assert all(r["symbol"] == "BTC/USDT:USDT" for r in rows)
    assert np.all(np.diff([r["timestamp"] for r in rows]) == 8 * HOUR)
    # never past server time
    everything = ex.fetch_funding_rate_history("BTC/USDT:USDT", since=int(funding.timestamp[0]), limit=1000)
    assert everything[-1]["timestamp"] <= now_ms < everything[-1]["timestamp"] + 8 * HOUR
    assert ex.fetch_funding_rate("BTC/USDT:USDT")["fundingRate"] == everything[-1]["fundingRate"]


# ---------------------------------------------------------------- script mode


def test_runs_as_a_script():
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_binance.py"), "--sample", str(SAMPLE), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("LISTENING http://127.0.0.1:")
        url = line.split()[1]
        with urllib.request.urlopen(url + "/api/v3/ping", timeout=5) as resp:
            assert json.loads(resp.read()) == {}
        with urllib.request.urlopen(url + "/api/v3/exchangeInfo", timeout=5) as resp:
            symbols = {s["symbol"] for s in json.loads(resp.read())["symbols"]}
        assert {"BTCUSDT", "ETHUSDT"} <= symbols
    finally:
        proc.kill()
        proc.wait(timeout=5)


# ---------------------------------------------------------------- the async client


def test_async_client_differences(fake, btc_1h):
    """ccxt.async_support (aiohttp) against the same server: same error mapping, two surprises."""

    async def scenario() -> None:
        ex = accxt.binance(fake.ccxt_config())
        try:
            await ex.load_markets()
            fake.inject("http_503")
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await ex.fetch_ohlcv("BTC/USDT", "1h", limit=2)
            fake.requests.clear()
            fake.inject("disconnect")  # aiohttp retries a dropped keep-alive connection once
            assert await ex.fetch_ohlcv("BTC/USDT", "1h", limit=2) == truth_rows(
                btc_1h.iloc[NOW_INDEX - 2 : NOW_INDEX]
            )
            assert fake.paths() == ["/api/v3/klines", "/api/v3/klines"]
            fake.inject("disconnect", times=2)
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await ex.fetch_ohlcv("BTC/USDT", "1h", limit=2)
            fake.inject("malformed_json")  # garbage rows rather than the sync client's []
            rows = await ex.fetch_ohlcv("BTC/USDT", "1h", limit=2)
            assert rows and all(r[1] is None for r in rows)
        finally:
            await ex.close()

    asyncio.run(scenario())
