"""The trading benchmark's harness (benchmarks/bench_trading.py) on a few events: it runs the real engine, counts
the events and the orders, and measures what it says it measures. Correctness only: no timed assertion.

Also the changes the benchmark led to: book snapshots throttled (not one journal write per book update), the
``journal_synchronous`` option, the paper broker's index of resting limit orders, the journal's background
checkpointer and ``meta_set_many``, the order manager's index of open orders."""

from __future__ import annotations

import asyncio
import importlib.util
import sqlite3
import sys
import time
from pathlib import Path

import pydantic
import pytest

from workbench.config import TradingConfig
from workbench.trading.brokers.base import MarketRules
from workbench.trading.brokers.paper import PaperBroker
from workbench.trading.journal import Journal, JournalError
from workbench.trading.orders import OrderManager
from workbench.types import Order, OrderStatus, OrderType, Side

ROOT = Path(__file__).resolve().parent.parent


def _load_bench():
    name = "bench_trading"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "bench_trading.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


bt = _load_bench()


def test_events_are_made_as_asked():
    ev = bt.make_events(2_500, 1_000, first_bar=1_000)
    assert len(ev) == 2_500
    firsts = [e for e in ev if e[0] == "candles" and e[2][0][4] == bt.price_of(int(e[2][0][0]) // bt.TF_MS)]
    bars = sorted({int(e[2][0][0]) // bt.TF_MS for e in ev if e[0] == "candles"})
    assert bars == [1_000, 1_001, 1_002]
    assert len(firsts) >= 3
    kinds = {e[0] for e in ev}
    assert kinds == {"candles", "book"}
    with pytest.raises(ValueError, match="events_per_bar"):
        bt.make_events(10, 0, first_bar=1)


def test_bare_loop_dispatches_every_event():
    r = bt.bare_throughput(3_000, events_per_bar=100, chunk=64)
    assert r["handled"] == 3_000
    ev = bt.make_events(3_000, 100, first_bar=10)
    assert r["counts"]["candles"] == sum(1 for e in ev if e[0] == "candles")
    assert r["counts"]["book"] == sum(1 for e in ev if e[0] == "book")
    assert r["counts"]["other"] == 0
    assert r["events_per_s"] > 0


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_engine_throughput_run_trades_every_bar(tmp_path, sync):
    r = bt.engine_throughput(1_200, events_per_bar=200, chunk=50, synchronous=sync, data_dir=tmp_path)
    assert r["events"] == 1_200
    assert r["events_handled"] >= 1_200  # the market events, plus the engine's timer events
    assert r["bars"] == 6
    # the flip strategy changes its target on every bar: one market order per closed bar, each filled
    assert r["orders"] >= r["bars"] - 1
    assert r["filled"] == r["orders"]
    assert r["risk_state"] == "ACTIVE"
    by_kind = r["journal_rows_by_kind"]
    # journal rows are counted from the replay's start: the decision the engine may take at start() is before
    assert r["orders"] - 1 <= by_kind["fill"] <= r["orders"]
    assert by_kind["order"] >= 3 * by_kind["fill"]  # INITIALIZED, SUBMITTED, FILLED at least
    # 600 book updates in a run far shorter than the snapshot period: about one book row, not 600
    assert by_kind.get("book", 0) <= 5
    # the journal the engine wrote is a well-formed SQLite file
    db = sqlite3.connect(next(tmp_path.glob(f"trading/sessions/tp-{sync.lower()}/journal.sqlite")))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_engine_latency_measures_each_decision():
    r = bt.engine_latency(bars=6, per_bar=4, synchronous="NORMAL")
    assert r["decisions"] >= 5
    keys = ("intent_raw", "intent_ex_strategy", "intent_cpu_ex_strategy", "submitted_ex_strategy",
            "decision_handled_ex_strategy")  # fmt: skip
    for key in keys:
        assert r[key]["n"] == r["decisions"]
    assert r["price_handled"]["n"] + r["book_handled"]["n"] + r["decisions"] >= 6 * 4 - 1
    # the intent row is written before the order is sent and before the event is fully handled
    assert r["intent_raw"]["max_us"] >= r["intent_ex_strategy"]["max_us"] > 0
    assert r["strategy_targets"]["n"] == r["decisions"]


def test_bare_latency_counts():
    r = bt.bare_latency(200)
    assert r["n"] == 200 and r["p50_us"] > 0


def test_main_writes_results(tmp_path, capsys):
    out = tmp_path / "trading.json"
    argv = ["--events", "400", "--events-per-bar", "100", "--latency-bars", "3", "--sync", "NORMAL"]
    assert bt.main([*argv, "--out", str(out)]) == 0
    import json

    res = json.loads(out.read_text())
    assert res["throughput"]["NORMAL"]["events"] == 400
    assert res["latency"]["NORMAL"]["decisions"] >= 2
    assert res["bare_throughput"]["handled"] == 400
    assert "events/s" in capsys.readouterr().out


# ------------------------------------------------------------------ the engine changes


def test_book_updates_are_journalled_once_per_snapshot_period(tmp_path):
    """Before: every book update was its own journal write (one fsync each under FULL)."""

    async def go() -> int:
        first = bt.first_bar_now()
        engine, _ = bt.build_engine(tmp_path, first, "NORMAL", session="books")
        engine.opt.snapshot_every_s = 3_600.0
        await engine.start()
        events = bt.make_events(81, 10_000, first)  # one candle update, then 40 candle and 40 book updates
        assert sum(1 for e in events if e[0] == "book") == 40
        done = asyncio.Event()

        async def feed() -> None:
            await bt.replay(engine.queue, events, 7)
            done.set()

        task = asyncio.create_task(feed())
        await engine.run(until=lambda: done.is_set() and engine.queue.empty())
        await task
        assert engine.journal is not None
        n = len(engine.journal.read(kinds="book"))
        await engine.stop()
        return n

    assert asyncio.run(go()) == 1


@pytest.mark.parametrize(("sync", "level"), [("FULL", 2), ("NORMAL", 1)])
def test_engine_opens_its_journal_with_the_configured_synchronous(tmp_path, sync, level):
    async def go() -> int:
        first = bt.first_bar_now()
        engine, _ = bt.build_engine(tmp_path, first, sync, session=f"sync-{sync}")
        await engine.start()
        assert engine.journal is not None
        got = engine.journal._db.execute("PRAGMA synchronous").fetchone()[0]
        await engine.stop()
        return got

    assert asyncio.run(go()) == level


def test_trading_config_journal_synchronous():
    assert TradingConfig().journal_synchronous == "FULL"
    assert TradingConfig(journal_synchronous="NORMAL").journal_synchronous == "NORMAL"
    with pytest.raises(pydantic.ValidationError, match="journal_synchronous"):
        TradingConfig(journal_synchronous="OFF")


def test_paper_limit_orders_rest_and_fill_among_many_closed_orders():
    """The paper broker looks only at resting limit orders on a price update; closed orders leave its index and
    a canceled limit never fills."""

    async def go() -> None:
        t = [1_000]
        b = PaperBroker({"BTC/USDT": MarketRules("BTC/USDT", amount_step=1e-5)}, {"USDT": 1e6},
                        taker_fee=0.001, maker_fee=0.0005, slippage=0.0, clock=lambda: t[0])  # fmt: skip
        b.on_price("BTC/USDT", last=100.0)
        for i in range(50):  # closed history: market orders, and limit orders canceled
            await b.submit(Order(f"m{i}", "BTC/USDT", Side.BUY, OrderType.MARKET, 0.01))
            lim = await b.submit(Order(f"c{i}", "BTC/USDT", Side.BUY, OrderType.LIMIT, 0.01, price=90.0))
            await b.cancel(lim)
        rest = await b.submit(Order("rest", "BTC/USDT", Side.BUY, OrderType.LIMIT, 0.5, price=95.0))
        assert rest.status is OrderStatus.ACCEPTED
        assert list(b._resting["BTC/USDT"]) == ["c49", "rest"] or list(b._resting["BTC/USDT"]) == ["rest"]
        b.on_price("BTC/USDT", last=96.0, low=95.5, high=96.5)
        assert (await b.fetch_order(rest)).status is OrderStatus.ACCEPTED
        b.on_price("BTC/USDT", last=94.0, low=89.0, high=95.0)  # crosses 95 (and 90: canceled ones stay out)
        assert (await b.fetch_order(rest)).status is OrderStatus.FILLED
        fills = await b.fetch_fills("BTC/USDT", None)
        assert [f.client_order_id for f in fills if f.client_order_id.startswith(("c", "rest"))] == ["rest"]
        assert fills[-1].price == 95.0 and fills[-1].liquidity == "maker"
        assert list(b._resting["BTC/USDT"]) == [] or all(
            not b._orders[c].status.is_open for c in b._resting["BTC/USDT"]
        )
        b.on_price("BTC/USDT", last=94.0, low=80.0, high=95.0)
        assert b._resting["BTC/USDT"] == {}

    asyncio.run(go())


def test_journal_checkpointer_takes_the_checkpoints_off_the_writer(tmp_path):
    """Before: SQLite's auto-checkpoint ran inside the commit that filled the WAL (milliseconds, whatever
    ``synchronous``): the engine's p99 latency was that commit."""
    path = tmp_path / "journal.sqlite"
    j = Journal(path, synchronous="NORMAL")
    j.start_checkpointer(interval_s=0.01)
    j.start_checkpointer(interval_s=0.01)  # once is enough: a second call changes nothing
    assert j._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    for i in range(300):
        j.append("log", {"level": "info", "message": f"row {i}"})
    deadline = time.monotonic() + 60
    while j.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert j.checkpoints >= 1
    thread = j._checkpointer
    assert thread is not None and thread.is_alive()
    j.append("log", {"level": "info", "message": "after a checkpoint"})
    j.close()
    assert not thread.is_alive()
    r = Journal(path, readonly=True)
    rows = r.read(kinds="log")
    assert [x.data["message"] for x in rows][-2:] == ["row 299", "after a checkpoint"]
    assert len(rows) == 301 and r.integrity_check() == "ok"
    with pytest.raises(JournalError, match="read-only"):
        r.start_checkpointer()
    r.close()


def test_journal_meta_set_many_is_all_or_none(tmp_path):
    j = Journal(tmp_path / "journal.sqlite")
    j.meta_set_many({"risk": {"state": "ACTIVE"}, "adapter": {"last_bar": 5}})
    assert j.meta_get("risk") == {"state": "ACTIVE"} and j.meta_get("adapter") == {"last_bar": 5}
    with pytest.raises(JournalError, match="meta b"):
        j.meta_set_many({"a": 1, "b": object()})
    assert j.meta_get("a") is None
    with pytest.raises(JournalError, match="schema_version"):
        j.meta_set_many({"x": 1, "schema_version": 2})
    assert j.meta_get("x") is None
    j.meta_set_many({"risk": {"state": "HALTED"}, "config": {"apiKey": "k3y", "exchange": "binance"}})
    assert j.meta_get("risk") == {"state": "HALTED"}
    assert j.meta_get("config") == {"apiKey": "***", "exchange": "binance"}  # redacted as meta_set does
    j.close()


def test_open_orders_index_matches_a_scan_and_survives_recover(tmp_path):
    """The order manager keeps the open orders' ids; its answer equals a scan of every order, also after a
    reload from the journal (recover)."""

    async def go() -> None:
        t = [1_000]
        b = PaperBroker({"BTC/USDT": MarketRules("BTC/USDT", amount_step=1e-5)}, {"USDT": 1e6},
                        taker_fee=0.001, maker_fee=0.0005, slippage=0.0, clock=lambda: t[0])  # fmt: skip
        await b.connect()
        b.on_price("BTC/USDT", last=100.0)
        j = Journal(tmp_path / "journal.sqlite")
        om = OrderManager(j, b, "s", clock_ms=lambda: t[0])

        def scan(m: OrderManager) -> list[str]:
            return [c for c, o in m.orders.items() if o.status.is_open]

        for i in range(20):
            t[0] += 1
            await om.submit(Order(f"m{i}", "BTC/USDT", Side.BUY, OrderType.MARKET, 0.01))
            lim = Order(f"l{i}", "BTC/USDT", Side.BUY, OrderType.LIMIT, 0.01, price=90.0 + i % 3)
            await om.submit(lim)
            if i % 4 == 0:
                await om.cancel(lim.client_order_id)
            for f in await b.fetch_fills("BTC/USDT", None):
                om.on_fill(f)
            assert [o.client_order_id for o in om.open_orders()] == scan(om)
        assert len(om.open_orders()) == 15
        b.on_price("BTC/USDT", last=90.5, low=90.5, high=91.0)  # the limits at 91 and 92 fill
        for f in await b.fetch_fills("BTC/USDT", None):
            om.on_fill(f)
        assert [o.client_order_id for o in om.open_orders()] == scan(om)
        assert {o.price for o in om.open_orders()} == {90.0}
        assert om.open_orders("ETH/USDT") == []
        again = OrderManager(j, b, "s", clock_ms=lambda: t[0])
        rep = await again.recover()
        assert rep.ok, rep.problems
        assert [o.client_order_id for o in again.open_orders()] == scan(again) == scan(om)
        j.close()

    asyncio.run(go())


def test_a_filled_market_order_is_journalled_once_per_change(tmp_path):
    """Before: the order row with the fill was written a second time, unchanged (the exchange id learnt from the
    venue's answer counted as a change after the fill had recorded it): one commit (an fsync) more per order."""

    async def go() -> list[str]:
        b = PaperBroker({"BTC/USDT": MarketRules("BTC/USDT", amount_step=1e-5)}, {"USDT": 1e6},
                        taker_fee=0.001, maker_fee=0.0005, slippage=0.0, clock=lambda: 5)  # fmt: skip
        await b.connect()
        b.on_price("BTC/USDT", last=100.0)
        j = Journal(tmp_path / "journal.sqlite")
        om = OrderManager(j, b, "s", clock_ms=lambda: 5)
        done = await om.submit(Order("m1", "BTC/USDT", Side.BUY, OrderType.MARKET, 0.5))
        assert done.status is OrderStatus.FILLED and done.exchange_order_id == "P1" and done.filled == 0.5
        statuses = [r.data["status"] for r in j.read(kinds="order")]
        assert j.orders()["m1"] == done
        j.close()
        return statuses

    assert asyncio.run(go()) == ["INITIALIZED", "SUBMITTED", "FILLED"]


def counted_note(before: int, commits: int) -> str:
    return f"{before} commits before the intent, {commits} in the event"


def test_a_bar_closing_event_commits_the_intent_second(tmp_path):
    """The commits (fsyncs under FULL) of a market event that closes a bar and trades: the closed candle with its
    equity mark (one transaction; before: two), then the intent (INITIALIZED): the 2nd commit (the risk and
    adapter state are saved after the orders, so that a kill between them retakes the decision). Before the
    hot-path work the intent was the 5th of 9."""

    async def go() -> tuple[int, int]:
        first = bt.first_bar_now()
        engine, _ = bt.build_engine(tmp_path, first, "NORMAL", session="commits")
        await engine.start()
        j = engine.journal
        assert j is not None
        engine._last_snapshot = float("inf")  # no price snapshot in the counted event (it is time driven)
        log: list[str] = []
        j._db.set_trace_callback(
            lambda sql: log.append("commit") if sql.strip().upper() == "COMMIT" else None
        )
        record_order = j.record_order

        def spy(order: Order) -> int:
            seq = record_order(order)
            if order.status is OrderStatus.INITIALIZED:
                log.append("intent")
            return seq

        j.record_order = spy  # type: ignore[method-assign]
        events = bt.make_events(6, 2, first)  # 3 bars: a candle update and a book update each
        done = asyncio.Event()
        counted: list[str] = []

        async def feed() -> None:
            for k, ev in enumerate(events):
                log.clear()
                before = engine.events
                engine.queue.put_nowait(ev)
                while engine.events == before or not engine.queue.empty():
                    await asyncio.sleep(0)
                if k == 4:  # the first event of the 3rd bar: it closes the 2nd, which trades
                    counted.extend(log)
            done.set()

        task = asyncio.create_task(feed())
        await engine.run(until=done.is_set)
        await task
        await engine.stop()
        assert "intent" in counted, counted
        return counted.index("intent"), counted.count("commit")

    before_intent, commits = asyncio.run(go())
    assert before_intent == 2, counted_note(before_intent, commits)  # the intent's own commit is the 2nd
    assert commits <= 8, counted_note(before_intent, commits)
