"""Benchmark of the trading engine (issue 9 §4): throughput on replayed market events and the latency from a
market event's receipt to the risk-checked order intent written to the journal, each beside a bare asyncio loop
that only dispatches the same events, in the same run (the ratio is the figure that travels to other machines).

Run with ``make bench`` (or ``.venv/bin/python benchmarks/bench_trading.py``; ``--quick`` for a reduced run); it is
not part of the test suite (``tests/test_bench_trading.py`` runs the harness on a few events, for correctness only).

The engine is the real one: :class:`~workbench.trading.engine.TradingEngine` with a
:class:`~workbench.trading.brokers.paper.PaperBroker`, the real :class:`~workbench.trading.risk.RiskManager`
(the limits of ``config/trading.yml``), the real order manager and the real SQLite journal in a temporary folder,
started with ``start()`` and driven by its own ``run()`` loop. What is a harness here, and only here:

* :class:`StubClient` stands in for the ccxt.pro client (no network): it serves the warm-up candles over
  ``fetch_ohlcv`` and its websocket ``watch_*`` calls never return, so the engine's own feed stays idle;
* :func:`replay` is the feed: it puts the pre-built events on the engine's queue (``("candles", symbol, rows)``
  and ``("book", symbol, top)``, the tuples :class:`~workbench.trading.feeds.MarketFeed` puts there), in chunks
  of ``--chunk`` events, yielding to the loop between chunks as a socket reader does;
* :class:`Flip` is a trivial strategy (long on even bars, flat on odd ones), so that every bar ends in an order
  and the strategy's own time is negligible; it is timed anyway and subtracted.

Events (:func:`make_events`): synthetic 1m candles of one symbol; each bar is ``--events-per-bar`` events: the
first candle update of a new bar (it closes the previous bar: a decision, a risk-checked market order, a paper
fill, all journalled), then candle updates of the forming bar (each one marks the portfolio to market, feeds the
kill switch and the paper broker) alternating with top-10 book updates. Prices are arranged so that the flip
strategy gains slightly each round trip: no risk limit is breached and every order passes the risk checks.

Figures:

1. **Throughput**: market events per second through the engine's loop (queue -> handler), start and stop excluded,
   journal ``synchronous=FULL`` and ``NORMAL``; the bare loop (``await queue.get()`` and a dispatch on the kind)
   on the same events, fed by the same :func:`replay`.
2. **Latency**: one event at a time (the next is put when the engine is idle again); ``perf_counter_ns`` at the
   put (the receipt) and at the return of the journal write of the order row that follows the risk check
   (INITIALIZED: the risk-checked intent), minus the time spent in the strategy (the adapter's ``targets()``:
   the strategy's ``target()`` and the candle frame built for it; ``target()`` alone is reported too). p50/p99
   over the decision events; the same for price events (receipt -> handled); the bare loop's receipt -> dispatch.
   The same path in CPU time (``thread_time_ns``) too: on a shared machine the wall-clock tail is mostly the
   scheduler's, and under ``synchronous=FULL`` the fsyncs' (neither is CPU time).

Prints a table and writes every figure plus the machine description to ``benchmarks/results/trading.json``.
``--profile`` writes a cProfile listing of a throughput run to ``benchmarks/results/trading_profile.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gc
import io
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from workbench.config import RiskConfig
from workbench.strategies.base import Params, Strategy
from workbench.trading.brokers.base import MarketRules
from workbench.trading.brokers.paper import PaperBroker
from workbench.trading.engine import EngineOptions, SessionSpec, TradingEngine
from workbench.trading.risk import RiskManager
from workbench.types import OrderStatus

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SYMBOL = "BTC/USDT"
TF = "1m"
TF_MS = 60_000
WARMUP = 3
INITIAL_CASH = 10_000.0
SIZE = 0.2  # of equity per position: under trading.yml's max_position_fraction (0.25)
TARGET_EVENTS_S = 100_000.0
TARGET_P99_MS = 1.0

Event = tuple[str, str, Any]


# ------------------------------------------------------------------------------------------ harness


class Flip(Strategy):
    """Long on bars with an even index (open time / timeframe), flat on odd ones: an order every bar."""

    name = "bench_flip"

    class Params(Params):
        pass

    def warmup(self) -> int:
        return WARMUP

    def target(self, data: Any, features: Any = None) -> pd.Series:
        last = int(data.index[-1].value // 1_000_000) // TF_MS
        return pd.Series([1.0 if last % 2 == 0 else 0.0], index=data.index[-1:])


def price_of(bar: int) -> float:
    """The synthetic open of bar ``bar``: bars where the flip strategy sells open 0.5 % above those where it buys
    (it buys at the open of the bar after an even bar, sells at the open of the bar after an odd one)."""
    return 100.5 if bar % 2 == 0 else 100.0


class StubClient:
    """Stands in for the ccxt.pro client: warm-up candles over REST; websocket calls that never return (the
    benchmark's :func:`replay` is the feed). Only the methods the engine calls."""

    has: ClassVar[dict[str, bool]] = {"watchOHLCV": True, "watchOrderBook": True}

    def __init__(self, first_bar: int) -> None:
        self.first_bar = first_bar  # bar index (open time / TF_MS) of the first replayed bar
        self._never = asyncio.Event()

    @staticmethod
    def parse_timeframe(timeframe: str) -> int:
        assert timeframe == TF
        return TF_MS // 1000

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> list[list[float]]:
        lo = (since or 0) // TF_MS
        lo = max(lo, self.first_bar - 50)
        hi = self.first_bar - 1  # history ends before the replay starts
        rows = [candle(b, price_of(b)) for b in range(lo, hi + 1)]
        return rows[: limit or len(rows)]

    async def watch_ohlcv(self, symbol: str, timeframe: str) -> list[list[float]]:
        await self._never.wait()
        raise AssertionError("unreachable")

    async def watch_order_book(self, symbol: str, limit: int | None = None) -> dict[str, Any]:
        await self._never.wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        return None


def candle(bar: int, close: float, open_: float | None = None) -> list[float]:
    o = price_of(bar) if open_ is None else open_
    return [float(bar * TF_MS), o, max(o, close) * 1.0002, min(o, close) * 0.9998, close, 1.0]


def make_events(n: int, events_per_bar: int, first_bar: int) -> list[Event]:
    """``n`` market events over ``ceil(n / events_per_bar)`` bars (see the module docstring). Payloads are
    shared between events where their values repeat (the engine does not mutate them): memory stays small."""
    if events_per_bar < 1:
        raise ValueError("events_per_bar must be at least 1")
    books = []
    for k in range(16):
        mid = 100.0 + 0.01 * k
        books.append(
            {
                "bids": [[round(mid - 0.01 * (i + 1), 2), 1.0 + i] for i in range(10)],
                "asks": [[round(mid + 0.01 * (i + 1), 2), 1.0 + i] for i in range(10)],
                "timestamp": None,
            }
        )
    events: list[Event] = []
    bar = first_bar
    while len(events) < n:
        o = price_of(bar)
        events.append(("candles", SYMBOL, [candle(bar, o)]))
        updates = [[candle(bar, o * (1 + 0.0001 * ((k % 7) - 3)))] for k in range(8)]
        for k in range(1, events_per_bar):
            if len(events) >= n:
                break
            if k % 2:
                events.append(("candles", SYMBOL, updates[k % 8]))
            else:
                events.append(("book", SYMBOL, books[k % 16]))
        bar += 1
    return events


async def replay(queue: asyncio.Queue, events: Sequence[Event], chunk: int) -> None:
    """The feed: ``events`` onto ``queue``, ``chunk`` at a time, yielding to the loop between chunks."""
    put = queue.put_nowait
    for i in range(0, len(events), chunk):
        for ev in events[i : i + chunk]:
            put(ev)
        await asyncio.sleep(0)


def build_engine(
    data_dir: Path, first_bar: int, synchronous: str, *, session: str = "bench"
) -> tuple[TradingEngine, StubClient]:
    client = StubClient(first_bar)
    rules = {SYMBOL: MarketRules(SYMBOL, amount_step=1e-5, price_step=0.01, min_notional=5.0)}
    opts = EngineOptions(initial_cash=INITIAL_CASH, stale_s=1e9, log=lambda m: None)
    opts = _with_sync(opts, synchronous)
    broker = PaperBroker(rules, {"USDT": INITIAL_CASH}, taker_fee=opts.fee_taker, maker_fee=opts.fee_maker,
                         slippage=opts.slippage, clock=lambda: 0)  # fmt: skip
    spec = SessionSpec(
        session, Flip.name, {}, "binance", (SYMBOL,), TF, "paper", SIZE, account=f"paper-{session}"
    )
    risk = RiskManager(RiskConfig())
    engine = TradingEngine(spec, Flip(), data_dir=data_dir, client=client, broker=broker, risk=risk,
                           options=opts)  # fmt: skip
    broker.on_fill = engine.on_paper_fill
    broker.clock = engine.now_ms
    return engine, client


def _with_sync(opts: EngineOptions, synchronous: str) -> EngineOptions:
    if hasattr(opts, "journal_synchronous"):
        opts.journal_synchronous = synchronous
    elif synchronous != "FULL":
        raise SystemExit("this engine has no journal_synchronous option: only FULL can be measured")
    return opts


def first_bar_now() -> int:
    """The bar after the current one: the replay starts just after the warm-up history, on the exchange clock."""
    return int(time.time() * 1000) // TF_MS + 1


# ------------------------------------------------------------------------------------------ throughput


async def _engine_throughput(
    data_dir: Path,
    n: int,
    events_per_bar: int,
    chunk: int,
    synchronous: str,
    profile: cProfile.Profile | None,
) -> dict[str, Any]:
    first = first_bar_now()
    events = make_events(n, events_per_bar, first)
    engine, _ = build_engine(data_dir, first, synchronous, session=f"tp-{synchronous.lower()}")
    await engine.start()
    assert engine.journal is not None and engine.orders is not None
    seq0 = engine.journal.last_seq()
    done = asyncio.Event()

    async def feed() -> None:
        await replay(engine.queue, events, chunk)
        done.set()

    gc.collect()
    if profile is not None:
        profile.enable()
    t0 = time.perf_counter()
    producer = asyncio.create_task(feed())
    await engine.run(until=lambda: done.is_set() and engine.queue.empty())
    elapsed = time.perf_counter() - t0
    if profile is not None:
        profile.disable()
    await producer
    orders = engine.orders.orders
    filled = sum(1 for o in orders.values() if o.status is OrderStatus.FILLED)
    rows = engine.journal.last_seq() - seq0
    kinds: dict[str, int] = {}
    for r in engine.journal.read(after_seq=seq0):
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    risk_state = engine.risk.state.value
    await engine.stop("benchmark done")
    return {
        "events": n,
        "events_handled": engine.events,  # the market events plus the engine's own timer events
        "bars": -(-n // events_per_bar),
        "orders": len(orders),
        "filled": filled,
        "journal_rows": rows,
        "journal_rows_by_kind": kinds,
        "risk_state": risk_state,
        "seconds": elapsed,
        "events_per_s": n / elapsed,
    }


def engine_throughput(
    n: int,
    events_per_bar: int = 1000,
    chunk: int = 1000,
    synchronous: str = "FULL",
    data_dir: Path | None = None,
    profile: cProfile.Profile | None = None,
) -> dict[str, Any]:
    """Replay ``n`` events through a started engine's ``run()`` loop; events/s with start and stop excluded."""
    with tempfile.TemporaryDirectory(prefix="bench-trading-") as tmp:
        d = Path(tmp) if data_dir is None else data_dir
        return asyncio.run(_engine_throughput(d, n, events_per_bar, chunk, synchronous, profile))


async def _bare_throughput(events: Sequence[Event], chunk: int) -> dict[str, Any]:
    queue: asyncio.Queue = asyncio.Queue()
    counts = {"candles": 0, "book": 0, "other": 0}

    def on_candles(symbol: str, payload: Any) -> None:
        counts["candles"] += 1

    def on_book(symbol: str, payload: Any) -> None:
        counts["book"] += 1

    n = len(events)
    t0 = time.perf_counter()
    producer = asyncio.create_task(replay(queue, events, chunk))
    handled = 0
    while handled < n:
        kind, symbol, payload = await queue.get()
        handled += 1
        if kind == "candles":
            on_candles(symbol, payload)
        elif kind == "book":
            on_book(symbol, payload)
        else:
            counts["other"] += 1
    elapsed = time.perf_counter() - t0
    await producer
    return {
        "events": n,
        "handled": handled,
        "counts": counts,
        "seconds": elapsed,
        "events_per_s": n / elapsed,
    }


def bare_throughput(n: int, events_per_bar: int = 1000, chunk: int = 1000) -> dict[str, Any]:
    """The reference: a bare asyncio loop that only dispatches the same events, fed the same way."""
    events = make_events(n, events_per_bar, first_bar_now())
    gc.collect()
    return asyncio.run(_bare_throughput(events, chunk))


# ------------------------------------------------------------------------------------------ latency


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _summary_us(ns: list[int]) -> dict[str, Any]:
    us = [x / 1000 for x in ns]
    return {
        "n": len(us),
        "p50_us": _pct(us, 0.50),
        "p99_us": _pct(us, 0.99),
        "max_us": max(us) if us else None,
        "mean_us": statistics.fmean(us) if us else None,
    }


async def _engine_latency(data_dir: Path, bars: int, per_bar: int, synchronous: str) -> dict[str, Any]:
    first = first_bar_now()
    events = make_events(bars * per_bar, per_bar, first)
    engine, _ = build_engine(data_dir, first, synchronous, session=f"lat-{synchronous.lower()}")
    await engine.start()
    j = engine.journal
    assert j is not None
    clock = time.perf_counter_ns
    cpu = (
        time.thread_time_ns
    )  # the CPU time of this thread: what the path costs without preemption or I/O waits
    marks: dict[str, int] = {}
    strat = {"targets": 0, "target": 0, "targets_cpu": 0}

    record_order = j.record_order

    def timed_record_order(order: Any) -> int:  # instrumentation of the journal write only
        seq = record_order(order)
        t = clock()
        if order.status is OrderStatus.INITIALIZED:
            marks.setdefault("intent", t)
            marks.setdefault("intent_cpu", cpu())
        elif order.status is OrderStatus.SUBMITTED:
            marks.setdefault("submitted", t)
        return seq

    j.record_order = timed_record_order  # type: ignore[method-assign]
    targets = engine.adapter.targets
    target = engine.strategy.target

    def timed_targets() -> dict[str, float]:
        t, c = clock(), cpu()
        try:
            return targets()
        finally:
            strat["targets"] += clock() - t
            strat["targets_cpu"] += cpu() - c

    def timed_target(data: Any, features: Any = None) -> Any:
        t = clock()
        try:
            return target(data, features)
        finally:
            strat["target"] += clock() - t

    engine.adapter.targets = timed_targets  # type: ignore[method-assign]
    engine.strategy.target = timed_target  # type: ignore[method-assign]

    out: dict[str, list[int]] = {
        "intent_ex_strategy": [],
        "intent_ex_target": [],
        "intent_raw": [],
        "intent_cpu_ex_strategy": [],
        "submitted_ex_strategy": [],
        "decision_handled_ex_strategy": [],
        "price_handled": [],
        "book_handled": [],
        "strategy_targets": [],
        "strategy_target": [],
    }
    done = asyncio.Event()

    async def feed() -> None:
        for ev in events:
            marks.clear()
            strat["targets"] = strat["target"] = strat["targets_cpu"] = 0
            before = engine.events
            c0 = cpu()
            t0 = clock()
            engine.queue.put_nowait(ev)
            while engine.events == before or not engine.queue.empty():  # handled (it never suspends midway)
                await asyncio.sleep(0)
            t1 = clock()
            if "intent" in marks:
                s_all, s_one = strat["targets"], strat["target"]
                out["intent_raw"].append(marks["intent"] - t0)
                out["intent_ex_strategy"].append(marks["intent"] - t0 - s_all)
                out["intent_ex_target"].append(marks["intent"] - t0 - s_one)
                out["intent_cpu_ex_strategy"].append(marks["intent_cpu"] - c0 - strat["targets_cpu"])
                out["submitted_ex_strategy"].append(marks.get("submitted", t1) - t0 - s_all)
                out["decision_handled_ex_strategy"].append(t1 - t0 - s_all)
                out["strategy_targets"].append(s_all)
                out["strategy_target"].append(s_one)
            elif ev[0] == "candles":
                out["price_handled"].append(t1 - t0)
            else:
                out["book_handled"].append(t1 - t0)
        done.set()

    producer = asyncio.create_task(feed())
    await engine.run(until=done.is_set)
    await producer
    await engine.stop("benchmark done")
    res = {k: _summary_us(v) for k, v in out.items()}
    res["decisions"] = len(out["intent_raw"])
    return res


def engine_latency(bars: int = 500, per_bar: int = 10, synchronous: str = "FULL") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-trading-") as tmp:
        return asyncio.run(_engine_latency(Path(tmp), bars, per_bar, synchronous))


async def _bare_latency(events: Sequence[Event]) -> dict[str, Any]:
    queue: asyncio.Queue = asyncio.Queue()
    clock = time.perf_counter_ns
    seen: list[int] = []
    handled = 0

    async def consume() -> None:
        nonlocal handled
        while True:
            kind, _symbol, _payload = await queue.get()
            if kind == "candles" or kind == "book":
                seen.append(clock())
            handled += 1

    task = asyncio.create_task(consume())
    lat: list[int] = []
    for ev in events:
        before = handled
        t0 = clock()
        queue.put_nowait(ev)
        while handled == before:
            await asyncio.sleep(0)
        lat.append(seen[-1] - t0)
    task.cancel()
    return _summary_us(lat)


def bare_latency(n: int = 5000) -> dict[str, Any]:
    return asyncio.run(_bare_latency(make_events(n, 10, first_bar_now())))


# ------------------------------------------------------------------------------------------ report


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": __import__("sqlite3").sqlite_version,
        "loadavg": load,
        "tmpdir": tempfile.gettempdir(),
    }


def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="market events per throughput run")
    ap.add_argument("--events-per-bar", type=int, default=1000, help="events per 1m bar (one order per bar)")
    ap.add_argument("--chunk", type=int, default=1000, help="events the replay puts on the queue at a time")
    ap.add_argument("--latency-bars", type=int, default=1000, help="decisions in the latency run")
    ap.add_argument("--sync", default="FULL,NORMAL", help="journal synchronous modes to measure")
    ap.add_argument("--quick", action="store_true", help="a reduced run (10^5 events, 200 decisions)")
    ap.add_argument("--profile", action="store_true", help="also write a cProfile listing to results/")
    ap.add_argument("--out", type=Path, default=RESULTS / "trading.json")
    a = ap.parse_args(argv)
    if a.quick:
        a.events, a.latency_bars = 100_000, 200
    modes = [m.strip().upper() for m in a.sync.split(",") if m.strip()]
    started = dt.datetime.now(dt.UTC)
    res: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(a).items()},
        "targets": {"events_per_s": TARGET_EVENTS_S, "p99_ms": TARGET_P99_MS},
    }
    print(f"trading engine benchmark, {a.events:,} events, {a.events_per_bar} per bar", flush=True)
    bare = bare_throughput(a.events, a.events_per_bar, a.chunk)
    res["bare_throughput"] = bare
    print(f"  bare loop: {bare['events_per_s']:,.0f} events/s", flush=True)
    res["throughput"] = {}
    for m in modes:
        prof = cProfile.Profile() if a.profile and m == modes[-1] else None
        r = engine_throughput(a.events, a.events_per_bar, a.chunk, synchronous=m, profile=prof)
        r["ratio_to_bare"] = bare["events_per_s"] / r["events_per_s"]
        res["throughput"][m] = r
        print(
            f"  engine, journal {m}: {r['events_per_s']:,.0f} events/s ({r['seconds']:.2f} s, "
            f"{r['orders']} orders, {r['journal_rows']} journal rows; bare / engine = {r['ratio_to_bare']:.1f})",
            flush=True,
        )
        if prof is not None:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(45)
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(30)
            (a.out.parent / "trading_profile.txt").write_text(s.getvalue())
    res["bare_latency"] = bare_latency(min(20_000, a.latency_bars * 10))
    print(f"  bare loop latency: p50 {_fmt(res['bare_latency']['p50_us'], '.1f')} us, "
          f"p99 {_fmt(res['bare_latency']['p99_us'], '.1f')} us", flush=True)  # fmt: skip
    res["latency"] = {}
    for m in modes:
        lat = engine_latency(a.latency_bars, 10, synchronous=m)
        res["latency"][m] = lat
        x, p, c = lat["intent_ex_strategy"], lat["price_handled"], lat["intent_cpu_ex_strategy"]
        print(
            f"  engine, journal {m}: receipt -> risk-checked intent journalled (strategy excluded) "
            f"p50 {_fmt(x['p50_us'], '.0f')} us, p99 {_fmt(x['p99_us'], '.0f')} us over {lat['decisions']} "
            f"decisions (CPU time only: p50 {_fmt(c['p50_us'], '.0f')} us, p99 {_fmt(c['p99_us'], '.0f')} us); "
            f"price event handled p50 {_fmt(p['p50_us'], '.0f')} us, p99 {_fmt(p['p99_us'], '.0f')} us; "
            f"strategy (targets) p50 {_fmt(lat['strategy_targets']['p50_us'], '.0f')} us",
            flush=True,
        )
    res["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1, default=str))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
