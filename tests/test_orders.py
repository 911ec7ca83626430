"""The order manager against a fake venue (tests/fake_broker.py) that injects timeouts after accept, -1007,
drops, rejections, late fills after cancel and deaths at any step, on a real journal file: never a duplicate order
at the venue, never a lost or doubled fill, the state reconciled with the venue's."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest
from fake_broker import Died, FakeBroker, FakeVenue, VirtualClock
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.trading.brokers.base import MarketRuleError, MarketRules
from workbench.trading.journal import Journal, fill_key
from workbench.trading.orders import CLIENT_ID_RE, OrderManager, client_order_id, manual_order_id
from workbench.trading.portfolio import Portfolio
from workbench.types import Fill, Order, OrderStatus, OrderType, Side

S = OrderStatus
BTC = "BTC/USDT"


class Rig:
    def __init__(self, tmp_path: Path, **om_kw) -> None:
        self.clock = VirtualClock()
        self.venue = FakeVenue(self.clock, prices={BTC: 100.0, "ETH/USDT": 10.0})
        self.broker = FakeBroker(self.venue)
        self.path = tmp_path / "journal.sqlite"
        self.journal = Journal(self.path)
        self.om_kw = om_kw
        self.om = self.new_om()
        self.seq = 0

    def new_om(self) -> OrderManager:
        kw = dict(outcome_window_s=10.0, clock_ms=self.clock.now_ms, sleep=self.clock.sleep)
        return OrderManager(self.journal, self.broker, "s1", **{**kw, **self.om_kw})

    def order(self, side: Side = Side.BUY, amount: float = 1.0, price: float | None = None, **kw) -> Order:
        self.seq += 1
        cid = client_order_id("s1", "sma", kw.get("symbol", BTC), 1_700_000_000_000, self.seq)
        typ = OrderType.LIMIT if price is not None else OrderType.MARKET
        return Order(cid, kw.pop("symbol", BTC), side, typ, amount, price, **kw)

    def rows(self, cid: str) -> list[str]:
        return [r.data["status"] for r in self.journal.read(kinds="order") if r.key == cid]


def run(coro):
    return asyncio.run(coro)


# --------------------------------------------------------------------------------------- client ids


def test_client_order_id_is_deterministic_and_fits_binance() -> None:
    a = client_order_id("sma_cross-BTC/USDT-5m", "sma_cross", BTC, 1_717_200_000_000, 0)
    assert a == client_order_id("sma_cross-BTC/USDT-5m", "sma_cross", BTC, 1_717_200_000_000, 0)
    assert len(a) <= 36 and CLIENT_ID_RE.match(a) and a.startswith("sma_cross.")
    assert a != client_order_id("sma_cross-BTC/USDT-5m", "sma_cross", BTC, 1_717_200_000_000, 1)
    m = manual_order_id("s", BTC, 17)
    assert m.startswith("manual.") and m == manual_order_id("s", BTC, 17) != manual_order_id("s", BTC, 18)
    # parts that would run together if simply joined stay apart
    assert client_order_id("a\x1fb", "c", BTC, 1, 1) != client_order_id("a", "b\x1fc", BTC, 1, 1)
    assert client_order_id("ab", "c", BTC, 1, 1) != client_order_id("a", "bc", BTC, 1, 1)
    weird = client_order_id("ß" * 100, "my strategy/with spaces and ünïcode" * 3, "X" * 80, 2**62, 10**12)
    assert len(weird) <= 36 and re.fullmatch(r"[.A-Z:/a-z0-9_-]{1,36}", weird)


_part = st.text(min_size=0, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(_part, _part, _part, st.integers(0, 2**50), st.integers(0, 10**6)),
        min_size=2,
        max_size=20,
        unique=True,
    )
)
def test_client_order_ids_differ_for_different_inputs(inputs: list) -> None:
    ids = [client_order_id(*x) for x in inputs]
    assert len(set(ids)) == len(ids)
    assert all(CLIENT_ID_RE.match(i) for i in ids)


# ----------------------------------------------------------------------------------------- market rules


def test_market_rules_round_and_check() -> None:
    r = MarketRules(
        BTC, amount_step=0.001, price_step=0.01, min_amount=0.001, min_notional=5.0, max_amount=100
    )
    assert r.round_amount(0.0029999) == 0.002  # down: never more than asked
    assert r.round_amount(0.3) == 0.3
    assert r.round_price(100.004) == 100.0 and r.round_price(100.006) == 100.01
    r.check(0.1, 100.0)
    with pytest.raises(MarketRuleError, match=r"BTC/USDT: notional 4.*minimum notional 5"):
        r.check(0.04, 100.0)
    with pytest.raises(MarketRuleError, match=r"BTC/USDT: amount 0\.0005 is not a multiple of the lot step"):
        r.check(0.0005, 100.0)
    with pytest.raises(MarketRuleError, match="above the maximum amount"):
        r.check(101.0, 100.0)
    m = MarketRules.from_ccxt(
        {
            "symbol": BTC,
            "precision": {"amount": 1e-5, "price": 0.01},
            "limits": {"amount": {"min": 1e-5, "max": 9000}, "cost": {"min": 5}},
        }
    )
    assert (m.amount_step, m.price_step, m.min_amount, m.max_amount, m.min_notional) == (
        1e-5,
        0.01,
        1e-5,
        9000.0,
        5.0,
    )
    d = MarketRules.from_ccxt(
        {"symbol": BTC, "precision": {"amount": 3, "price": 2}, "limits": {}}, tick_size=False
    )
    assert (d.amount_step, d.price_step) == (0.001, 0.01)


# ---------------------------------------------------------------------------------------------- submit


def test_intent_journalled_before_the_post_then_filled(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    seen_at_post: list[str] = []
    real_submit = rig.broker.submit

    async def spy(order: Order) -> Order:
        with Journal(rig.path, readonly=True) as other:  # another reader sees it committed
            seen_at_post.append(other.orders()[order.client_order_id].status.value)
        return await real_submit(order)

    rig.broker.submit = spy  # type: ignore[method-assign]
    pf = Portfolio("USDT", {"USDT": 100_000.0})
    rig.om.fill_listener = pf.apply
    o = rig.order(amount=1.0, price=None)
    done = run(rig.om.submit(o))
    assert seen_at_post == ["SUBMITTED"]
    assert done.status is S.FILLED and done.filled == 1.0 and done.exchange_order_id
    assert rig.rows(o.client_order_id)[:2] == ["INITIALIZED", "SUBMITTED"]
    assert rig.journal.orders()[o.client_order_id] == done
    assert pf.position(BTC).amount == 1.0
    assert pf.reconcile(rig.venue.balances) == []


def test_limit_order_partial_then_full_fills_pushed_twice(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    o = rig.order(amount=2.0, price=99.0)
    acc = run(rig.om.submit(o))
    assert acc.status is S.ACCEPTED
    xid = acc.exchange_order_id
    rig.venue.execute(xid, 0.5)
    assert rig.venue.deliver(rig.om, twice=True) == 1
    assert rig.om.get(o.client_order_id).status is S.PARTIALLY_FILLED
    rig.venue.match(BTC, 98.0)
    assert rig.venue.deliver(rig.om, twice=True) == 1
    fin = rig.om.get(o.client_order_id)
    assert fin.status is S.FILLED and fin.filled == pytest.approx(2.0)
    assert len(rig.journal.fills()) == 2


def test_resubmitting_a_known_id_never_sends_it_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    o = rig.order(amount=1.0, price=90.0)
    first = run(rig.om.submit(o))
    again = run(rig.om.submit(o))
    assert again == first and rig.broker.calls["submit"] == 1 and rig.venue.accepted[o.client_order_id] == 1


def test_market_rule_breach_is_denied_and_never_sent(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    o = rig.order(amount=0.01, price=100.0)  # notional 1 < 5
    d = run(rig.om.submit(o))
    assert d.status is S.DENIED and "minimum notional" in d.reason
    assert rig.broker.calls["submit"] == 0
    assert rig.rows(o.client_order_id) == ["INITIALIZED", "DENIED"]
    r = rig.om.deny(rig.order(amount=1.0), "max_order_notional: 100 > 50")
    assert r.status is S.DENIED and rig.broker.calls["submit"] == 0
    sent = run(rig.om.submit(rig.order(amount=1.0, price=90.0)))
    assert rig.om.deny(sent, "too late") == sent  # already at the venue: left as it is


@pytest.mark.parametrize("fault", ["timeout_after_accept", "-1007", "drop", "crash"])
def test_unknown_outcome_placed_is_found_by_query_not_resent(tmp_path: Path, fault: str) -> None:
    rig = Rig(tmp_path)
    rig.venue.faults["submit"].append(fault)
    o = rig.order(amount=1.0, price=95.0)
    got = run(rig.om.submit(o))
    assert got.status is S.ACCEPTED and got.exchange_order_id
    assert rig.broker.calls["submit"] == 1 and rig.venue.accepted[o.client_order_id] == 1
    m = rig.order(amount=1.0)
    rig.venue.faults["submit"].append(fault)
    assert run(rig.om.submit(m)).status is S.FILLED  # a market order filled behind the lost answer
    assert rig.venue.accepted[m.client_order_id] == 1 and len(rig.journal.fills()) == 1


@pytest.mark.parametrize("fault", ["timeout_before", "-1007_lost", "delayed:6000"])
def test_unknown_outcome_not_placed_is_rejected_after_the_window(tmp_path: Path, fault: str) -> None:
    rig = Rig(tmp_path)
    rig.venue.faults["submit"].append(fault)
    o = rig.order(amount=1.0, price=95.0)
    t0 = rig.clock.now_ms()
    got = run(rig.om.submit(o))
    assert got.status is S.REJECTED and got.reason == "not found at the venue"
    assert rig.clock.now_ms() - t0 >= 10_000  # only after the outcome window
    assert rig.broker.calls["submit"] == 1 and rig.venue.accepted[o.client_order_id] == 0
    rig.clock.advance(60)
    assert (
        rig.venue.view(o.client_order_id) is None
    )  # a late arrival was dropped by the venue's receive window


def test_delayed_post_within_the_receive_window_is_found(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.venue.faults["submit"].append("delayed:3000")
    o = rig.order(amount=1.0, price=95.0)
    got = run(rig.om.submit(o))
    assert got.status is S.ACCEPTED and rig.venue.accepted[o.client_order_id] == 1
    assert rig.broker.calls["fetch_order"] >= 2


def test_rejected_and_unavailable(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.venue.faults["submit"].append("reject")
    r = run(rig.om.submit(rig.order(amount=1.0, price=95.0)))
    assert r.status is S.REJECTED and "insufficient balance" in r.reason
    rig.venue.faults["submit"].append("unavailable")
    u = run(rig.om.submit(rig.order(amount=1.0, price=95.0)))
    assert u.status is S.REJECTED and u.reason == "not found at the venue"
    assert rig.broker.calls["fetch_order"] == 1  # checked once, no window wait: it never left


def test_venue_unreachable_keeps_submitted_then_resolves_later(tmp_path: Path) -> None:
    rig = Rig(tmp_path, resolve_attempts=3)
    rig.venue.faults["submit"].append("timeout_after_accept")
    rig.venue.faults["fetch_order"].extend(["fail"] * 3)
    o = rig.order(amount=1.0, price=95.0)
    got = run(rig.om.submit(o))
    assert got.status is S.SUBMITTED and o.client_order_id in rig.om.unresolved
    assert rig.om.open_orders() == [got]  # counted as open by the risk manager
    assert run(rig.om.submit(o)).status is S.SUBMITTED and rig.broker.calls["submit"] == 1
    (res,) = run(rig.om.resolve_pending())
    assert res.status is S.ACCEPTED and not rig.om.unresolved
    assert rig.venue.accepted[o.client_order_id] == 1


def test_duplicate_answer_is_resolved_by_query(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    o = rig.order(amount=1.0, price=95.0)
    rig.venue.place(o)  # already open at the venue (placed by an earlier life of this session)
    got = run(rig.om.submit(o))
    assert got.status is S.ACCEPTED and rig.venue.accepted[o.client_order_id] == 1


# ---------------------------------------------------------------------------------------------- cancel


def test_cancel_and_a_fill_after_the_cancel(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    pf = Portfolio("USDT", {"USDT": 100_000.0})
    rig.om.fill_listener = pf.apply
    o = run(rig.om.submit(rig.order(amount=1.0, price=95.0)))
    c = run(rig.om.cancel(o))
    assert c.status is S.CANCELED
    assert rig.rows(o.client_order_id)[-2:] == ["PENDING_CANCEL", "CANCELED"]
    # the venue had matched part of it before the cancel landed: the fill comes afterwards
    late = Fill(
        o.client_order_id,
        BTC,
        Side.BUY,
        0.3,
        95.0,
        0.0285,
        "USDT",
        rig.clock.now_ms(),
        "999",
        o.exchange_order_id,
    )
    assert rig.om.on_fill(late) is True and rig.om.on_fill(late) is False
    after = rig.om.get(o.client_order_id)
    assert after.status is S.CANCELED and after.filled == pytest.approx(0.3)
    assert pf.position(BTC).amount == pytest.approx(0.3)


def test_cancel_with_a_late_fill_at_the_venue(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    o = run(rig.om.submit(rig.order(amount=1.0, price=95.0)))
    rig.venue.faults["cancel"].append("late_fill:0.4")
    c = run(rig.om.cancel(o))
    assert c.status is S.CANCELED and c.filled == pytest.approx(0.4)  # fetched from the venue's trades
    assert [f.amount for f in rig.journal.fills()] == [pytest.approx(0.4)]


@pytest.mark.parametrize("fault", ["timeout", "timeout_after_cancel", "fail"])
def test_cancel_with_unknown_outcome_is_resolved_by_query(tmp_path: Path, fault: str) -> None:
    rig = Rig(tmp_path)
    o = run(rig.om.submit(rig.order(amount=1.0, price=95.0)))
    rig.venue.faults["cancel"].append(fault)
    c = run(rig.om.cancel(o))
    if fault == "timeout_after_cancel":
        assert c.status is S.CANCELED
    else:  # the cancel never landed: the order is working again
        assert c.status is S.ACCEPTED
        assert run(rig.om.cancel(c)).status is S.CANCELED


def test_cancel_of_an_order_that_filled_first(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    o = run(rig.om.submit(rig.order(amount=1.0, price=95.0)))
    rig.venue.match(BTC, 94.0)  # filled at the venue; the push has not arrived
    c = run(rig.om.cancel(o))
    assert c.status is S.FILLED and c.filled == 1.0
    assert rig.venue.deliver(rig.om) == 0  # the push arrives later: already recorded


def test_replace_and_cancel_all(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    o = run(rig.om.submit(rig.order(amount=1.0, price=95.0)))
    rig.venue.execute(o.exchange_order_id, 0.25)
    rig.venue.deliver(rig.om)
    new_id = client_order_id("s1", "sma", BTC, 1, 99)
    n = run(rig.om.replace(o, new_id, price=96.0))
    assert rig.om.get(o.client_order_id).status is S.CANCELED
    assert n is not None and n.status is S.ACCEPTED and n.amount == pytest.approx(0.75) and n.price == 96.0
    rig.venue.match(BTC, 90.0)
    rig.venue.deliver(rig.om)
    assert run(rig.om.replace(n, client_order_id("s1", "sma", BTC, 1, 100), price=97.0)) is None  # it filled
    a = run(rig.om.submit(rig.order(amount=1.0, price=80.0)))
    b = run(rig.om.submit(rig.order(amount=1.0, price=8.0, symbol="ETH/USDT")))
    out = run(rig.om.cancel_all())
    assert {x.client_order_id for x in out} == {a.client_order_id, b.client_order_id}
    assert all(x.status is S.CANCELED for x in out) and rig.om.open_orders() == []


def test_order_timeout_cancels_stale_limit_orders(tmp_path: Path) -> None:
    rig = Rig(tmp_path, order_timeout_s=30)
    o = run(rig.om.submit(rig.order(amount=1.0, price=95.0)))
    assert run(rig.om.expire_stale()) == []
    rig.clock.advance(31)
    (c,) = run(rig.om.expire_stale())
    assert (
        c.client_order_id == o.client_order_id and c.status is S.CANCELED and "timeout after 30 s" in c.reason
    )


def test_fill_of_an_unknown_order_is_external_and_ignored(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    f = Fill("someone-else", BTC, Side.BUY, 1.0, 100.0, 0.1, "USDT", 1, "77", "x-1")
    assert rig.om.on_fill(f) is False and rig.journal.fills() == []


# --------------------------------------------------------------------------------------------- recover


def test_recover_after_deaths_at_each_step(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    a = rig.order(amount=1.0, price=95.0)
    rig.venue.faults["submit"].append("die_after")  # placed; the answer never journalled
    with pytest.raises(Died):
        run(rig.om.submit(a))
    b = rig.order(amount=1.0, price=95.0)
    rig.venue.faults["market"].append("die")  # INITIALIZED journalled, never sent
    with pytest.raises(Died):
        run(rig.om.submit(b))
    c = rig.order(amount=1.0, price=96.0)
    rig.venue.faults["submit"].append("die_before")  # SUBMITTED journalled, never sent
    with pytest.raises(Died):
        run(rig.om.submit(c))
    d = run(rig.om.submit(rig.order(amount=1.0, price=97.0)))
    rig.venue.faults["cancel"].append("die_after_cancel")
    with pytest.raises(Died):
        run(rig.om.cancel(d))
    # while the session is down: a fills, someone else places an order on the account
    rig.venue.match(BTC, 95.0)
    ext = rig.venue.place(Order("manual-on-the-website", BTC, Side.SELL, OrderType.LIMIT, 1.0, 500.0))

    rig.clock.advance(20)  # a restart takes a while: c's outcome window has passed
    pf = Portfolio("USDT", {"USDT": 100_000.0})
    om = rig.new_om()
    om.fill_listener = pf.apply
    rep = run(om.recover())
    assert rep.ok, rep.problems
    assert om.get(a.client_order_id).status is S.FILLED
    assert om.get(b.client_order_id).status is S.DENIED and b.client_order_id in rep.abandoned
    assert om.get(c.client_order_id).status is S.REJECTED
    assert om.get(d.client_order_id).status is S.CANCELED
    assert [x.client_order_id for x in rep.external] == [ext.client_order_id]
    assert rep.fills_recovered == 1
    assert all(v <= 1 for v in rig.venue.accepted.values())
    # a restarted engine re-creating the same intents sends nothing
    for x in (a, b, c):
        run(om.submit(x))
    assert rig.venue.accepted[b.client_order_id] == 0 and rig.venue.accepted[c.client_order_id] == 0
    rebuilt = Portfolio.from_fills("USDT", {"USDT": 100_000.0}, rig.journal.fills())
    assert rebuilt.reconcile(rig.venue.balances) == [] and rebuilt == pf


def test_recover_reports_what_it_cannot_reconcile(tmp_path: Path) -> None:
    rig = Rig(tmp_path, resolve_attempts=2)
    o = run(rig.om.submit(rig.order(amount=1.0, price=95.0)))
    rig.venue.faults["fetch_order"].extend(["fail"] * 2)
    rig.venue.faults["fetch_open_orders"].append("fail")
    rep = run(rig.new_om().recover())
    assert not rep.ok
    assert any(o.client_order_id in p for p in rep.problems)
    assert any("open orders could not be fetched" in p for p in rep.problems)


# ------------------------------------------------------------------------------------------ fault soak

SUBMIT_FAULTS = [None] * 6 + [
    "timeout_after_accept",
    "timeout_before",
    "-1007",
    "-1007_lost",
    "drop",
    "reject",
    "unavailable",
    "crash",
    "delayed:2000",
    "delayed:7000",
    "die_before",
    "die_after",
]
CANCEL_FAULTS = [None] * 4 + ["timeout", "timeout_after_cancel", "fail", "late_fill:0.5", "die_after_cancel"]


async def _soak(rig: Rig, rng: random.Random, steps: int) -> None:
    om = rig.om
    intents: list[Order] = []
    for _ in range(steps):
        r = rng.random()
        try:
            if r < 0.4:
                side = rng.choice([Side.BUY, Side.SELL])
                px = None if rng.random() < 0.4 else round(100 + rng.uniform(-3, 3), 2)
                o = rig.order(side, round(rng.uniform(0.1, 2.0), 5), px)
                intents.append(o)
                f = rng.choice(SUBMIT_FAULTS)
                if f:
                    rig.venue.faults["submit"].append(f)
                if rng.random() < 0.2:
                    rig.venue.faults["fetch_order"].append("fail")
                if rng.random() < 0.05:
                    rig.venue.faults["market"].append("die")
                if rng.random() < 0.1:
                    rig.venue.faults["fetch_fills"].append("fail")
                await om.submit(o)
            elif r < 0.55 and om.open_orders():
                f = rng.choice(CANCEL_FAULTS)
                if f:
                    rig.venue.faults["cancel"].append(f)
                await om.cancel(rng.choice(om.open_orders()))
            elif r < 0.75:
                rig.venue.match(BTC, round(100 + rng.uniform(-4, 4), 2))
            elif r < 0.9:
                rig.venue.deliver(om, twice=rng.random() < 0.5)
            elif r < 0.95:
                await om.resolve_pending()
            else:
                raise Died("a random kill between events")
        except Died:
            rig.venue.faults.clear()
            rig.clock.advance(rng.uniform(0, 20))
            om = rig.om = rig.new_om()
            await om.recover()
            for o in intents[-3:]:  # a restarted strategy re-creates its last intents: nothing is resent
                await om.submit(o)
        rig.clock.advance(rng.uniform(0, 2))
    # the end: no more faults; a final restart reconciles everything
    rig.venue.faults.clear()
    rig.clock.advance(30)
    om = rig.om = rig.new_om()
    rep = await om.recover()
    assert rep.ok, rep.problems


@pytest.mark.parametrize("seed", range(40))
def test_fault_soak_no_duplicate_order_no_lost_fill(tmp_path: Path, seed: int) -> None:
    rig = Rig(tmp_path)
    rng = random.Random(seed)
    run(_soak(rig, rng, steps=30))
    venue = rig.venue
    assert all(n <= 1 for n in venue.accepted.values()), "a duplicate order reached the venue"
    om = rig.om
    mine = {o.client_order_id for o in om.orders.values()}
    # every order at the venue is known, in the same open/closed state, with the same filled amount
    for vo in venue.orders.values():
        assert vo.client_order_id in mine
        lo = om.get(vo.client_order_id)
        assert lo.exchange_order_id == vo.exchange_order_id
        assert lo.filled == pytest.approx(vo.filled, abs=1e-9)
        assert lo.status.is_open == vo.status.is_open, (lo, vo)
        if not vo.status.is_open:
            assert lo.status in (vo.status, S.FILLED) or (vo.status is S.FILLED and lo.status is S.FILLED)
    for lo in om.orders.values():  # orders the venue never saw are closed (denied, rejected)
        if venue.by_cid.get(lo.client_order_id) is None:
            assert lo.status in (S.DENIED, S.REJECTED), lo
    keys = [fill_key(f) for f in rig.journal.fills()]
    assert len(keys) == len(set(keys)), "a fill recorded twice"
    assert set(keys) == {fill_key(f) for f in venue.fills}, "a fill lost"
    pf = Portfolio.from_fills("USDT", {"USDT": 100_000.0}, rig.journal.fills())
    assert pf.reconcile(venue.balances, tolerance=1e-6) == []
    assert rig.journal.integrity_check() == "ok"


def test_fills_missing_when_a_session_dies_are_fetched_after_the_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    o = run(rig.om.submit(rig.order(amount=1.0, price=95.0)))
    rig.venue.faults["cancel"].append("late_fill:0.5")
    rig.venue.faults["fetch_fills"].append("fail")
    c = run(rig.om.cancel(o))
    assert (
        c.status is S.CANCELED and c.filled == 0.0
    )  # the venue says 0.5 filled; its trades could not be read
    # later fills in the symbol move the journal's last fill time on; then the session dies
    rig.clock.advance(600)
    m = run(rig.om.submit(rig.order(amount=1.0)))
    assert m.status is S.FILLED
    rig.clock.advance(600)
    om = rig.new_om()
    rep = run(om.recover())
    assert rep.ok, rep.problems
    assert om.get(o.client_order_id).filled == pytest.approx(0.5)
    assert {fill_key(f) for f in rig.journal.fills()} == {fill_key(f) for f in rig.venue.fills}


def test_order_updates_from_the_venue(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    o = run(rig.om.submit(rig.order(amount=1.0, price=95.0)))
    xid = o.exchange_order_id
    rig.venue.execute(xid, 1.0)  # filled; the update arrives before the trade push
    up = rig.venue.orders[xid]
    got = run(rig.om.on_order_update(up))
    assert got.status is S.FILLED and got.filled == 1.0  # the fills were fetched, not taken from the update
    stale = Order(
        o.client_order_id, BTC, Side.BUY, OrderType.LIMIT, 1.0, 95.0, status=S.ACCEPTED, exchange_order_id=xid
    )
    assert run(rig.om.on_order_update(stale)).status is S.FILLED  # never backwards
    # an update that names only the exchange id (the client id lost) still finds its order
    p = run(rig.om.submit(rig.order(amount=1.0, price=90.0)))
    anon = Order(
        "x",
        BTC,
        Side.BUY,
        OrderType.LIMIT,
        1.0,
        90.0,
        status=S.CANCELED,
        exchange_order_id=p.exchange_order_id,
    )
    assert run(rig.om.on_order_update(anon)).status is S.CANCELED
    other = Order(
        "not-ours", BTC, Side.BUY, OrderType.LIMIT, 1.0, 90.0, status=S.ACCEPTED, exchange_order_id="zz"
    )
    assert run(rig.om.on_order_update(other)) is None
    assert len(rig.journal.fills()) == 1
