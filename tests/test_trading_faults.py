"""Faults (issue 9 §4): a live session (``workbench trade run --mode live``, a real process, the real ccxt
clients) against the replay exchange, each fault injected on the order POST of one decision (5xx, 429, a
dropped connection, a timeout before the request is processed, a timeout or a drop after the venue accepted the
order, Binance -1007), a websocket disconnect, and rejections (at the venue: insufficient balance; before
sending: below the minimum notional). Each time: no order twice at the venue, the journal agrees with the venue
(orders, fills, balances), the engine keeps trading; where the state cannot be reconciled (the account changed
behind the session's back) a restart refuses to trade with a message that says why.

ccxt's timeout is 3 s here and the replay's ``timeout_fault_s`` 6 s, so a "timeout" fault is a client-side
``RequestTimeout`` while the venue still holds the request. An order whose POST failed before it reached the
venue is established as "not found at the venue" only after the order manager's outcome window
(``order_outcome_window_s``, 4 s here: the replay never executes a request it held back)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fake_broker import FakeBroker, FakeVenue, VirtualClock
from live_session import (
    CASH,
    START,
    SYMBOL,
    TF_MS,
    LiveSession,
    assert_agrees,
    bars_of,
    step,
    venue_orders,
    venue_trades,
    write_config,
    write_strategy,
)

from workbench.data.sample import load_sample
from workbench.data.store import Store
from workbench.replay import ReplayExchange
from workbench.trading.journal import Journal, journal_path
from workbench.trading.orders import OrderManager, client_order_id
from workbench.types import Order, OrderStatus, OrderType, Side

ROOT = Path(__file__).resolve().parents[1]
# the venue took the order, the answer got lost
PLACED = ("timeout-after-accept", "drop-after-accept", "1007")
NOT_PLACED = ("5xx", "429", "drop", "timeout")  # the request never reached the matching engine
OUTCOME_WINDOW_S = 4.0  # trading.yml order_outcome_window_s: held-back requests here are never executed late


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("faults-home") / "data"
    load_sample(Store(data), ROOT / "data" / "sample", kinds=("candles",))
    return data


@pytest.fixture
def replay(home):
    x = ReplayExchange(Store(home), [SYMBOL], "5m", start=START, speed=0, balances={"USDT": CASH},
                       timeout_fault_s=6.0)  # fmt: skip
    with x.run_in_thread():
        yield x


def live(home: Path, replay: ReplayExchange, tmp_path: Path, name: str, *extra: str) -> LiveSession:
    cfg = write_config(tmp_path / "config", replay, home, timeout_ms=3000, outcome_window_s=OUTCOME_WINDOW_S)
    s = LiveSession(cfg, home, replay, name, write_strategy(tmp_path / "strategies"), *extra)
    s.start()
    s.running()
    s.decided(replay.now_ms() - TF_MS)
    return s


def journal_order(s: LiveSession, cid: str):
    j = Journal(journal_path(s.home, s.name), readonly=True)
    try:
        return j.orders().get(cid)
    finally:
        j.close()


@pytest.mark.slow
@pytest.mark.parametrize("fault", PLACED + NOT_PLACED)
def test_a_fault_on_the_order_post_sends_nothing_twice_and_is_reconciled(fault, home, replay, tmp_path):
    s = live(home, replay, tmp_path, f"fault-{fault}")
    first = replay.now_ms() - 2 * TF_MS
    try:
        step(replay, s, 1)
        before = len(venue_orders(replay))
        replay.inject(fault, path="/api/v3/order", method="POST")
        t = replay.advance(TF_MS)  # the bar that closes makes an order; its POST meets the fault
        s.decided(t - TF_MS, timeout=120)
        assert replay.status()["faults_queued"] == [], "the fault was not met"
        cid = client_order_id(s.name, s.strategy, SYMBOL, t, 0)
        o = journal_order(s, cid)
        assert o is not None, "the decision made no order"
        if fault in PLACED:
            # established by asking the venue for the client id, never by sending it again
            assert o.status is OrderStatus.FILLED and o.filled > 0
            assert [v.clientOrderId for v in venue_orders(replay)[before:]] == [cid]
        else:
            assert o.status is OrderStatus.REJECTED and o.reason == "not found at the venue", o
            assert len(venue_orders(replay)) == before
        last = step(replay, s, 3)  # and it trades on
        assert s.p.poll() is None
    finally:
        s.stop()
    assert s.p.returncode == 0, s.text()[-3000:]
    got = assert_agrees(s)
    cids = [v.clientOrderId for v in got["orders"]]
    assert len(set(bars_of(s, cids, first, last).values())) == len(cids)
    assert len(cids) >= 3


@pytest.mark.slow
def test_a_websocket_disconnect_is_backfilled_and_no_bar_is_acted_on_twice(home, replay, tmp_path):
    s = live(home, replay, tmp_path, "disconnect")
    first = replay.now_ms() - 2 * TF_MS
    try:
        step(replay, s, 1)
        for bars in (1, 3):  # a drop, then bars that close while the stream is down
            assert replay.drop_websockets() >= 1
            for _ in range(bars):
                t = replay.advance(TF_MS)
            s.decided(t - TF_MS, timeout=120)
        last = step(replay, s, 2)
        assert s.p.poll() is None
        j = s.journal()
        try:
            logs = [r.data.get("message", "") for r in j.read(kinds="log")]
        finally:
            j.close()
        assert any("reconnected" in m for m in logs), logs
    finally:
        s.stop()
    got = assert_agrees(s)
    cids = [v.clientOrderId for v in got["orders"]]
    bars = bars_of(s, cids, first, last)
    assert len(set(bars.values())) == len(cids)
    assert len(cids) >= 5


@pytest.mark.slow
def test_a_live_buy_keeps_cash_back_for_a_worse_fill(home, tmp_path):
    """The venue fills market buys 0.6% above the price the engine expects (its slippage 60 bps, the engine's
    5): an all-in buy sized on the whole balance costs more than the balance and the venue refuses it; with
    ``tradable_balance_ratio`` 0.99 (the default) the same buy is placed and filled, and the balance covers it."""
    replay = ReplayExchange(Store(home), [SYMBOL], "5m", start=START, speed=0, balances={"USDT": CASH},
                            slippage_bps=60.0)  # fmt: skip
    with replay.run_in_thread():
        got = {}
        for ratio in (1.0, 0.99):
            cfg = write_config(tmp_path / f"config-{ratio}", replay, home, timeout_ms=3000,
                               outcome_window_s=OUTCOME_WINDOW_S, trading_extra={"tradable_balance_ratio": ratio})  # fmt: skip
            name = f"buffer-{ratio}"
            s = LiveSession(cfg, home, replay, name, write_strategy(tmp_path / "strategies"), "--size", "1.0")
            try:
                s.start()
                s.running()
                s.decided(replay.now_ms() - TF_MS)
                for _ in range(3):  # the flip strategy buys on every other bar
                    if any(o.side is Side.BUY for o in _orders(s)):
                        break
                    step(replay, s, 1)
                buys = [o for o in _orders(s) if o.side is Side.BUY]
                assert buys, s.text()
                got[ratio] = buys[0]
                if ratio == 0.99:
                    step(replay, s, 1)  # and sold again at the next bar: the account as it was, less costs
            finally:
                s.stop()
        refused, placed = got[1.0], got[0.99]
        assert refused.status is OrderStatus.REJECTED and "insufficient balance" in (refused.reason or ""), (
            refused
        )
        assert placed.status is OrderStatus.FILLED, placed
        fills = [t for t in venue_trades(replay) if t.side == "BUY"]
        assert len(fills) == 1 and fills[0].price * fills[0].qty <= CASH, fills
        assert replay.balances()["USDT"]["free"] >= 0.0


def _orders(s: LiveSession) -> list[Order]:
    j = Journal(journal_path(s.home, s.name), readonly=True)
    try:
        return list(j.orders().values())
    finally:
        j.close()


@pytest.mark.slow
def test_a_venue_rejection_is_journalled_and_a_changed_account_stops_the_restart(home, replay, tmp_path):
    s = live(home, replay, tmp_path, "rejected")
    try:
        # flat (so the next decision buys), then the account loses its cash behind the session's back
        for _ in range(3):
            if replay.balances()["BTC"]["free"] == 0:
                break
            step(replay, s, 1)
        assert replay.balances()["BTC"]["free"] == 0
        before = len(venue_orders(replay))
        with replay._lock:
            kept, replay.venue.free["USDT"] = replay.venue.free["USDT"], 1.0
        t = replay.advance(TF_MS)
        s.decided(t - TF_MS)
        o = journal_order(s, client_order_id(s.name, s.strategy, SYMBOL, t, 0))
        assert o is not None and o.status is OrderStatus.REJECTED, o
        assert "insufficient balance" in (o.reason or ""), o.reason
        assert len(venue_orders(replay)) == before  # nothing placed, nothing resent
        step(replay, s, 1)
        assert s.p.poll() is None  # the session goes on
    finally:
        s.stop()
    # the venue's balances now differ from the journal's: a restart refuses to trade and says why
    s.start()
    assert s.p.wait(120) == 1
    out = s.text().rsplit("===== life", 1)[-1]
    assert "balances differ" in out and "USDT" in out and "Trading refused" in out, out
    # the account put right, the session starts and agrees with the venue
    with replay._lock:
        replay.venue.free["USDT"] = kept
    s.start()
    s.running()
    step(replay, s, 1)
    s.stop()
    assert_agrees(s)


@pytest.mark.slow
def test_an_order_below_the_minimum_notional_is_refused_before_sending(home, replay, tmp_path):
    s = live(home, replay, tmp_path, "tiny", "--size", "0.0004")  # ~4 USDT a trade; the venue's minimum is 5
    try:
        t = step(replay, s, 2)
        assert s.p.poll() is None
    finally:
        s.stop()
    j = Journal(journal_path(home, "tiny"), readonly=True)
    try:
        orders = list(j.orders().values())
        risk = [r.data for r in j.read(kinds="risk")]
    finally:
        j.close()
    assert orders and all(o.status is OrderStatus.DENIED for o in orders), orders
    assert all("minimum notional" in (o.reason or "") for o in orders), [o.reason for o in orders]
    assert any("minimum notional" in (r.get("reason") or "") for r in risk)
    assert venue_orders(replay) == []
    assert t > 0
    assert_agrees(s)


def test_the_outcome_window_runs_on_the_wall_clock_while_the_session_clock_stands_still(tmp_path) -> None:
    """A replay at speed 0 (or paused) stops the session's clock; an order whose POST got no answer and that the
    venue does not know must still be settled (REJECTED "not found at the venue") once the window has passed in
    wall time, not stay SUBMITTED until the replay moves (the engine would block on it at every timer tick)."""
    standing = VirtualClock()
    wall = [0.0]

    async def sleep(seconds: float) -> None:  # time passes for the process, not for the session's clock
        wall[0] += seconds
        await asyncio.sleep(0)

    venue = FakeVenue(standing, prices={SYMBOL: 100.0})
    venue.faults["submit"].append("timeout_before")  # never reached the venue
    j = Journal(tmp_path / "journal.sqlite")
    om = OrderManager(j, FakeBroker(venue), "s", outcome_window_s=10.0, clock_ms=standing.now_ms, sleep=sleep,
                      monotonic=lambda: wall[0])  # fmt: skip
    o = Order(client_order_id("s", "x", SYMBOL, 0, 0), SYMBOL, Side.BUY, OrderType.MARKET, 1.0)
    got = asyncio.run(om.submit(o))
    j.close()
    assert got.status is OrderStatus.REJECTED and got.reason == "not found at the venue", got
    assert wall[0] >= 10.0 and venue.accepted[o.client_order_id] == 0


@pytest.mark.slow
def test_random_faults_on_every_rest_call_leave_the_session_running_and_reconciled(home, replay, tmp_path):
    """5xx, 429, dropped connections and lost answers drawn at random (seeded) over every REST request of the
    running session (klines, orders, order queries, trades, balances): it keeps trading, sends nothing twice,
    and once the faults stop the journal agrees with the venue."""
    s = live(home, replay, tmp_path, "random-faults")
    first = replay.now_ms() - 2 * TF_MS
    try:
        step(replay, s, 1)
        drawn: list[tuple[str, str, str]] = []
        take = replay._take_fault

        def counted(method: str, path: str) -> str | None:  # the replay's own draw, counted
            f = take(method, path)
            if f is not None:
                drawn.append((method, path, f))
            return f

        with replay._lock:
            replay._take_fault = counted
            replay._rng.seed(11)
            replay.fault_kinds = ("5xx", "429", "drop", "drop-after-accept", "1007")
            replay.fault_rate = 0.25
        for _ in range(8):
            t = replay.advance(TF_MS)
            s.decided(t - TF_MS, timeout=120)
        with replay._lock:
            replay.fault_rate = 0.0
        last = step(replay, s, 2)
        assert s.p.poll() is None
    finally:
        s.stop()
    assert s.p.returncode == 0, s.text()[-3000:]
    assert len(drawn) >= 3, drawn
    got = assert_agrees(s)
    cids = [v.clientOrderId for v in got["orders"]]
    assert len(set(bars_of(s, cids, first, last).values())) == len(cids)
    assert len(cids) >= 5
    print(f"faults drawn: {drawn}")


def _sizer(cash: float, fraction: float = 1.0):
    """``TradingEngine._sized`` on just what it reads: the market's lot step, the quote balance, the options."""
    from types import SimpleNamespace

    from workbench.trading.brokers.base import MarketRules
    from workbench.trading.engine import EngineOptions, TradingEngine

    rules = MarketRules(SYMBOL, amount_step=0.00001)
    eng = SimpleNamespace(
        broker=SimpleNamespace(market=lambda s: rules),
        portfolio=SimpleNamespace(balances={"USDT": cash}),
        opt=EngineOptions(fee_taker=0.001, slippage=0.0005, buy_cash_fraction=fraction),
    )
    return lambda intent, position=0.0: TradingEngine._sized(eng, intent, position)  # type: ignore[arg-type]


def test_a_buy_is_capped_by_the_tradable_part_of_the_cash_and_fails_closed() -> None:
    from workbench.trading.strategy import Intent

    def buy(amount: float, price: float = 100.0) -> Intent:
        return Intent(SYMBOL, Side.BUY, amount, price, 0, 1.0)

    # all of the cash at the expected fill price (slippage and taker fee in), or the tradable 99% of it
    full, kept = _sizer(10_000.0)(buy(1e9)), _sizer(10_000.0, 0.99)(buy(1e9))
    assert full == pytest.approx(10_000 / (100 * 1.0005 * 1.001), abs=1e-5)
    assert kept == pytest.approx(0.99 * 10_000 / (100 * 1.0005 * 1.001), abs=1e-5)
    assert _sizer(10_000.0, 0.99)(buy(1.0)) == 1.0  # a buy the cash pays for is not cut
    # a cap that is not a number (no reference price) buys nothing, a NaN position sells nothing
    assert _sizer(10_000.0)(buy(1.0, float("nan"))) == 0.0
    assert _sizer(10_000.0)(Intent(SYMBOL, Side.SELL, 1.0, 100.0, 0, 0.0), float("nan")) == 0.0
    assert _sizer(10_000.0)(Intent(SYMBOL, Side.SELL, 1.0, 100.0, 0, 0.0), 0.4) == 0.4
    for bad in (0.0, 1.5, float("nan"), -0.1):
        with pytest.raises(ValueError, match="buy_cash_fraction"):
            _sizer(1.0, bad)
