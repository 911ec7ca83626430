"""Collection with the REAL ccxt.binance client against a loopback fake Binance, faults included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import H, as_truth
from fake_binance import FakeBinance, synthetic_funding

from workbench.data.collect import CollectError, Collector
from workbench.data.exchanges import make_exchange
from workbench.data.store import Store

SINCE = "2024-01-01"


def collector(settings, store: Store) -> Collector:
    return Collector(make_exchange(settings, "binance"), store, settings.collect, sleep=lambda s: None)


def assert_equals_truth(store: Store, symbol: str, truth: pd.DataFrame) -> None:
    got = as_truth(store.candles("binance", symbol, "1h"))
    pd.testing.assert_frame_equal(got, truth.reset_index(drop=True), check_exact=True)


def test_full_collection_equals_truth(fake, make_settings, store) -> None:
    col = collector(make_settings(fake), store)
    for sym in ("BTC/USDT", "ETH/USDT"):
        rep = col.ohlcv(sym, "1h", since=SINCE)
        assert rep.rows_added == 2000
        assert_equals_truth(store, sym, fake.truth[sym])
    klines = [q for p, q in fake.requests if p == "/api/v3/klines"]
    assert len(klines) >= 8  # paginated: 2 x 2000 candles at 500 a page


def test_incremental_run_fetches_only_what_is_new(fake, make_settings, store) -> None:
    col = collector(make_settings(fake), store)
    col.ohlcv("BTC/USDT", "1h", since=SINCE)
    n_before = len(fake.requests)
    rep = col.ohlcv("BTC/USDT", "1h")  # no --since: continue from the store
    assert rep.rows_added == 0
    klines = [q for p, q in fake.requests[n_before:] if p == "/api/v3/klines"]
    assert len(klines) == 1  # one look at the tail, which is empty
    last = int(fake.truth["BTC/USDT"]["timestamp"].iloc[-1])
    assert int(klines[0]["startTime"]) == last + H
    # a run that asks again from the start refetches nothing either (coverage is recorded)
    n_before = len(fake.requests)
    col.ohlcv("BTC/USDT", "1h", since=SINCE)
    assert len([p for p, _ in fake.requests[n_before:] if p == "/api/v3/klines"]) == 1


def test_incremental_picks_up_new_candles_as_the_clock_moves(btc_1h, make_settings, store) -> None:
    data = btc_1h.iloc[:600].reset_index(drop=True)
    t_last = int(data["timestamp"].iloc[-1])
    with FakeBinance(candles={("BTC/USDT", "1h"): data}, server_time_ms=t_last - 99 * H).start() as f:
        col = collector(make_settings(f), store)
        col.ohlcv("BTC/USDT", "1h", since=SINCE)
        assert len(store.candles("binance", "BTC/USDT", "1h")) == 500
        f.server_time_ms = t_last + H
        rep = col.ohlcv("BTC/USDT", "1h")
        assert rep.rows_added == 100
        assert_equals_truth(store, "BTC/USDT", data)


def test_the_open_candle_is_never_stored(btc_1h, make_settings, store) -> None:
    data = btc_1h.iloc[:300].reset_index(drop=True)
    t_open = int(data["timestamp"].iloc[-1])  # the last candle is still open at the fake's clock
    with FakeBinance(
        candles={("BTC/USDT", "1h"): data}, server_time_ms=t_open + 20 * 60_000, open_candle=True
    ).start() as f:
        col = collector(make_settings(f), store)
        # many exchanges ignore an end time: ask without one, so the open candle comes back and must be dropped
        orig = col.exchange.fetch_ohlcv
        col.exchange.fetch_ohlcv = lambda *a, params=None, **k: orig(*a, **k)
        rep = col.ohlcv("BTC/USDT", "1h", since=SINCE)
        assert rep.dropped_open == 1
        col.exchange.fetch_ohlcv = orig
        stored = store.candles("binance", "BTC/USDT", "1h")
        assert len(stored) == 299
        assert stored.index[-1].value // 1_000_000 == t_open - H
        f.server_time_ms = t_open + H  # the candle closes; the next run stores its final values
        col.ohlcv("BTC/USDT", "1h")
        assert_equals_truth(store, "BTC/USDT", data)


@pytest.mark.parametrize(
    "fault",
    [
        "http_429",
        "http_418",
        "rate_limit_1003",
        "http_500",
        "http_502",
        "http_503",
        "http_504",
        "malformed_json",
        "disconnect",
        "duplicate_candles",
        "out_of_order",
    ],
)
def test_each_fault_is_survived_and_the_result_is_exact(fault, fake, make_settings, store) -> None:
    col = collector(make_settings(fake), store)
    # let the first page through, then hit the next two requests with the fault
    orig = col.exchange.fetch_ohlcv
    calls = {"n": 0}

    def fetch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            fake.inject(fault, times=2)
        return orig(*a, **k)

    col.exchange.fetch_ohlcv = fetch
    rep = col.ohlcv("BTC/USDT", "1h", since=SINCE)
    assert fake.fault_count() == 0
    assert_equals_truth(store, "BTC/USDT", fake.truth["BTC/USDT"])
    if fault not in ("duplicate_candles", "out_of_order"):
        assert rep.retries == 2


def test_timeouts_are_retried(fake, make_settings, store) -> None:
    fake.timeout_fault_s = 1.5
    col = collector(make_settings(fake, timeout_ms=1000), store)
    fake.inject("timeout", times=1)
    rep = col.ohlcv("BTC/USDT", "1h", since=SINCE)
    assert rep.retries == 1
    assert_equals_truth(store, "BTC/USDT", fake.truth["BTC/USDT"])


def test_a_persistent_fault_is_reported_clearly_and_keeps_what_was_committed(
    fake, make_settings, store
) -> None:
    col = collector(make_settings(fake, max_retries=3), store)
    orig = col.exchange.fetch_ohlcv
    calls = {"n": 0}

    def fetch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            fake.inject("http_503", times=100)
        return orig(*a, **k)

    col.exchange.fetch_ohlcv = fetch
    with pytest.raises(CollectError) as e:
        col.ohlcv("BTC/USDT", "1h", since=SINCE)
    msg = str(e.value)
    assert "binance" in msg and "BTC/USDT" in msg and "giving up after 4 attempts" in msg
    assert "ExchangeNotAvailable" in msg
    # the two pages before the outage were committed, whole and in order
    got = store.candles("binance", "BTC/USDT", "1h")
    assert len(got) == 1000
    assert_equals_truth(store, "BTC/USDT", fake.truth["BTC/USDT"].iloc[:1000])
    fake.clear_faults()
    col.exchange.fetch_ohlcv = orig
    col.ohlcv("BTC/USDT", "1h")  # resumes where it stopped
    assert_equals_truth(store, "BTC/USDT", fake.truth["BTC/USDT"])


def test_rate_limit_honours_backoff(fake, make_settings, store) -> None:
    slept: list[float] = []
    s = make_settings(fake, backoff_initial_s=0.5, backoff_max_s=4.0)
    col = Collector(make_exchange(s, "binance"), store, s.collect, sleep=slept.append)
    fake.inject("http_429", times=3)
    col.ohlcv("BTC/USDT", "1h", since=SINCE)
    assert len(slept) == 3
    # exponential with jitter (within [0.5, 1] x 0.5 * 2**attempt), never shorter than the server's Retry-After
    retry_after = 1.0  # the fake's 429 carries Retry-After: 1, as Binance's does
    for attempt, d in enumerate(slept):
        assert max(0.25 * 2**attempt, retry_after) <= d <= max(0.5 * 2**attempt, retry_after)


def test_bad_symbol_timeframe_and_dates_are_clear_errors(fake, make_settings, store) -> None:
    col = collector(make_settings(fake), store)
    with pytest.raises(CollectError, match=r"unknown symbol 'BTC/USDX'.*did you mean 'BTC/USDT'"):
        col.ohlcv("BTC/USDX", "1h", since=SINCE)
    with pytest.raises(CollectError, match=r"timeframe '7m' is not offered; offered: .*1m"):
        col.ohlcv("BTC/USDT", "7m", since=SINCE)
    with pytest.raises(CollectError, match=r"invalid timeframe 'hourly'"):
        col.ohlcv("BTC/USDT", "hourly", since=SINCE)
    with pytest.raises(CollectError, match=r"invalid since 'last tuesday'"):
        col.ohlcv("BTC/USDT", "1h", since="last tuesday")
    with pytest.raises(CollectError, match=r"nothing stored yet.*--since"):
        col.ohlcv("BTC/USDT", "1h")
    with pytest.raises(CollectError, match=r"is after until"):
        col.ohlcv("BTC/USDT", "1h", since="2024-03-01", until="2024-02-01")
    assert store.series() == []  # nothing written by any of these


def test_until_bounds_the_collection(fake, make_settings, store) -> None:
    col = collector(make_settings(fake), store)
    col.ohlcv("BTC/USDT", "1h", since="2024-01-02", until="2024-01-03")
    got = store.candles("binance", "BTC/USDT", "1h")
    assert len(got) == 24
    assert (
        str(got.index[0]) == "2024-01-02 00:00:00+00:00" and str(got.index[-1]) == "2024-01-02 23:00:00+00:00"
    )
    # widening the range fetches only the missing parts, on both sides
    col.ohlcv("BTC/USDT", "1h", since=SINCE, until="2024-01-04")
    assert len(store.candles("binance", "BTC/USDT", "1h")) == 72


def test_trades_orderbook_tickers_and_funding(btc_1h, make_settings, store) -> None:
    from conftest import SAMPLE
    from fake_binance import load_sample

    kw = load_sample(SAMPLE / "binance", funding=True)
    trades = kw["trades"]["BTC/USDT"]
    t_end = int(trades["timestamp"].max())
    funding = {"BTC/USDT:USDT": synthetic_funding(btc_1h)}
    with FakeBinance(
        candles={("BTC/USDT", "1h"): btc_1h},
        trades={"BTC/USDT": trades},
        books=kw["books"],
        funding=funding,
        server_time_ms=t_end + 1000,
    ).start() as f:
        s = make_settings(f)
        col = collector(s, store)
        t0 = int(trades["timestamp"].min())
        rep = col.trades("BTC/USDT", since=t0)
        got = store.read_table(store.key("trades", "binance", "BTC/USDT")).to_pandas()
        assert rep.rows_added == len(trades) == len(got)
        assert sorted(got["id"].astype(int)) == sorted(trades["trade_id"].astype(int))
        assert np.allclose(np.sort(got["price"]), np.sort(trades["price"]))
        assert col.trades("BTC/USDT").rows_added == 0  # incremental: nothing new

        col.orderbook("BTC/USDT", depth=50)
        book = store.read_table(store.key("orderbook", "binance", "BTC/USDT")).to_pandas()
        assert len(book) == 100
        bids = book[book["side"] == "bid"].sort_values("level")
        assert np.allclose(bids["price"].to_numpy(), [p for p, _ in kw["books"]["BTC/USDT"]["bids"][:50]])
        assert (np.diff(bids["price"]) < 0).all()

        reps = col.tickers(["BTC/USDT"])
        assert reps[0].rows_added == 1
        assert len(store.sql("SELECT * FROM tickers")) == 1

        with pytest.raises(CollectError, match="not a perpetual swap"):
            col.funding("BTC/USDT", since="2024-01-01")
        rep = col.funding("BTC/USDT:USDT", since="2024-01-01")
        fr = store.read_table(store.key("funding", "binance", "BTC/USDT:USDT")).to_pandas()
        truth = funding["BTC/USDT:USDT"]
        truth = truth[truth["timestamp"] <= f.server_time_ms]
        assert len(fr) == len(truth) == rep.rows_added
        assert np.allclose(fr["rate"].to_numpy(), truth["rate"].to_numpy())
