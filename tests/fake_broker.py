"""A fake venue behind the Broker protocol, with fault injection, for the order manager's tests (never in the
package: the paper and ccxt brokers are the product's).

The venue keeps its own truth: orders by client id (a client id is unique only among OPEN orders, as at Binance:
a repeat while open is -2010, after it closed it is accepted again, so ``accepted[cid]`` counting above 1 is a
duplicate order placed), executions, balances. A POST that "arrives" later than ``recv_window_ms`` after it was
sent is dropped, as Binance drops a request older than ``recvWindow``.

Faults are queued per operation (``venue.faults['submit'].append('timeout_after_accept')``) and consumed one per
call:
- submit: ``timeout_after_accept`` (accepted, then the answer is lost: UnknownOutcome), ``timeout_before`` (lost
  on the way: UnknownOutcome, never placed), ``-1007`` (UnknownOutcome; placed), ``-1007_lost`` (UnknownOutcome;
  not placed), ``delayed:<ms>`` (UnknownOutcome; the POST arrives <ms> later, dropped when later than the receive
  window), ``drop`` (connection dropped after the POST: UnknownOutcome, placed), ``reject`` (OrderRejected),
  ``unavailable`` (BrokerUnavailable, not sent), ``crash`` (RuntimeError after placing: a broker bug);
- fetch_order / cancel / fetch_fills / fetch_open_orders: ``fail`` (BrokerUnavailable), ``timeout``
  (UnknownOutcome; a cancel that times out may or may not have been applied: ``timeout_after_cancel`` applies it);
- cancel: ``late_fill:<fraction>`` (the order matches that fraction of its remaining amount just before the cancel
  lands: the cancel is confirmed, and the fill is seen only later);
- fill delivery: executions are visible to ``fetch_fills`` at once; pushes to a listener happen only when the
  test calls ``deliver()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from dataclasses import replace

from workbench.trading.brokers.base import (
    BrokerUnavailable,
    DuplicateOrder,
    MarketRules,
    OrderRejected,
    UnknownOutcome,
)
from workbench.types import Fill, Order, OrderStatus, OrderType, Side

S = OrderStatus


class Died(BaseException):
    """The process dies here (a SIGKILL at this point): nothing after it runs, the journal keeps what was
    committed. A BaseException, so that no ``except Exception`` of the code under test swallows it."""


class VirtualClock:
    """A clock in ms that moves only when someone sleeps on it: the tests are deterministic and fast."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.t = start_ms

    def now_ms(self) -> int:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += round(seconds * 1000)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


class FakeVenue:
    """The venue's side: truth, matching, faults."""

    def __init__(
        self,
        clock: VirtualClock,
        prices: dict[str, float] | None = None,
        balances: dict[str, float] | None = None,
        fee_rate: float = 0.001,
        fee_currency: str | None = None,
        recv_window_ms: int = 5_000,
    ) -> None:
        self.clock = clock
        self.prices = dict(prices or {"BTC/USDT": 100.0})
        self.balances = defaultdict(float, balances or {"USDT": 100_000.0})
        self.fee_rate = fee_rate
        self.fee_currency = fee_currency  # None: the quote
        self.recv_window_ms = recv_window_ms
        self.orders: dict[str, Order] = {}  # by exchange id
        self.by_cid: dict[str, str] = {}  # client id -> latest exchange id
        self.accepted: defaultdict[str, int] = defaultdict(int)  # client id -> orders placed with it
        self.fills: list[Fill] = []
        self.undelivered: list[Fill] = []
        self.in_flight: list[tuple[int, int, Order]] = []  # (arrival ms, sent ms, order)
        self.faults: defaultdict[str, list[str]] = defaultdict(list)
        self._ids = itertools.count(1)
        self._trades = itertools.count(1)

    # ------------------------------------------------------------------------------------------- truth

    def _arrivals(self) -> None:
        now = self.clock.now_ms()
        keep = []
        for arrive, sent, order in self.in_flight:
            if arrive > now:
                keep.append((arrive, sent, order))
            elif arrive - sent <= self.recv_window_ms:
                with contextlib.suppress(OrderRejected):  # a duplicate open id: refused, as at the venue
                    self.place(order)
        self.in_flight = keep

    def place(self, order: Order) -> Order:
        cid = order.client_order_id
        xid = self.by_cid.get(cid)
        if xid is not None and self.orders[xid].status.is_open:
            raise DuplicateOrder("-2010 Duplicate order sent.")
        xid = str(next(self._ids))
        placed = replace(order, exchange_order_id=xid, status=S.ACCEPTED, filled=0.0, avg_price=None)
        self.orders[xid] = placed
        self.by_cid[cid] = xid
        self.accepted[cid] += 1
        if order.type is OrderType.MARKET:
            self.execute(xid, placed.amount)
        else:
            self.match(order.symbol)
        return self.orders[xid]

    def execute(self, xid: str, amount: float, price: float | None = None) -> Fill:
        o = self.orders[xid]
        amount = min(amount, o.remaining)
        px = price if price is not None else (o.price if o.type is OrderType.LIMIT else self.prices[o.symbol])
        base, quote = o.symbol.split("/")
        fee_ccy = self.fee_currency or quote
        fee = amount * self.fee_rate * (px if fee_ccy == quote else 1.0)
        f = Fill(
            client_order_id=o.client_order_id,
            symbol=o.symbol,
            side=o.side,
            amount=amount,
            price=px,
            fee=fee,
            fee_currency=fee_ccy,
            timestamp=self.clock.now_ms(),
            trade_id=str(next(self._trades)),
            exchange_order_id=xid,
        )
        filled = o.filled + amount
        avg = px if not o.filled else ((o.avg_price or px) * o.filled + px * amount) / filled
        done = filled >= o.amount * (1 - 1e-12)
        status = (
            S.FILLED if done else (o.status if o.status in (S.CANCELED, S.EXPIRED) else S.PARTIALLY_FILLED)
        )
        self.orders[xid] = replace(o, filled=filled, avg_price=avg, status=status)
        self.balances[base] += f.signed_amount
        self.balances[quote] -= f.signed_amount * px
        self.balances[fee_ccy] -= fee
        self.fills.append(f)
        self.undelivered.append(f)
        return f

    def match(self, symbol: str, price: float | None = None) -> list[Fill]:
        """Fill every open limit order that ``price`` (default: the current price) crosses."""
        if price is not None:
            self.prices[symbol] = price
        px = self.prices[symbol]
        out = []
        for xid, o in list(self.orders.items()):
            if (
                o.symbol != symbol
                or o.status not in (S.ACCEPTED, S.PARTIALLY_FILLED)
                or o.type is not OrderType.LIMIT
            ):
                continue
            if (o.side is Side.BUY and px <= o.price) or (o.side is Side.SELL and px >= o.price):
                out.append(self.execute(xid, o.remaining))
        return out

    def view(self, cid: str) -> Order | None:
        self._arrivals()
        xid = self.by_cid.get(cid)
        return None if xid is None else self.orders[xid]

    def deliver(self, om, twice: bool = False) -> int:
        """Push the executions not yet pushed (as a websocket would, with the client id); ``twice``: each
        one is pushed again (a reconnect replays). Returns how many the order manager found new."""
        out, self.undelivered = self.undelivered, []
        n = 0
        for f in out:
            n += om.on_fill(f)
            if twice:
                n += om.on_fill(f)
        return n

    def take(self, op: str) -> str | None:
        q = self.faults[op]
        return q.pop(0) if q else None


class FakeBroker:
    """The Broker protocol over a :class:`FakeVenue`."""

    name = "fake"

    def __init__(self, venue: FakeVenue, rules: dict[str, MarketRules] | None = None) -> None:
        self.venue = venue
        self.rules = rules or {
            s: MarketRules(s, amount_step=1e-5, price_step=0.01, min_notional=5.0) for s in venue.prices
        }
        self.calls: defaultdict[str, int] = defaultdict(int)

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def market(self, symbol: str) -> MarketRules:
        if self.venue.take("market") == "die":
            raise Died("before SUBMITTED was journalled")
        return self.rules[symbol]

    def _common(self, op: str) -> None:
        f = self.venue.take(op)
        if f == "fail":
            raise BrokerUnavailable(f"{op}: connection refused")
        if f == "timeout":
            raise UnknownOutcome(f"{op}: RequestTimeout")
        if f is not None:
            self.venue.faults[op].insert(0, f)

    async def submit(self, order: Order) -> Order:
        self.calls["submit"] += 1
        await asyncio.sleep(0)
        v = self.venue
        v._arrivals()
        f = v.take("submit")
        if f == "die_before":
            raise Died("before the POST")
        if f == "unavailable":
            raise BrokerUnavailable("connection refused")
        if f == "reject":
            raise OrderRejected("-2010 Account has insufficient balance for requested action.")
        if f in ("timeout_before", "-1007_lost"):
            raise UnknownOutcome(f"{f}: send status unknown")
        if f is not None and f.startswith("delayed:"):
            now = v.clock.now_ms()
            v.in_flight.append((now + int(f.split(":", 1)[1]), now, order))
            raise UnknownOutcome(
                "-1007 Timeout waiting for response from backend server. Send status unknown"
            )
        placed = v.place(order)
        if f == "die_after":
            raise Died("after the POST, before the answer was journalled")
        if f in ("timeout_after_accept", "-1007", "drop"):
            raise UnknownOutcome(f"{f}: the answer was lost")
        if f == "crash":
            raise RuntimeError("broker bug after the POST")
        return placed

    async def cancel(self, order: Order) -> Order:
        self.calls["cancel"] += 1
        await asyncio.sleep(0)
        v = self.venue
        f = v.take("cancel")
        if f == "fail":
            raise BrokerUnavailable("cancel: connection refused")
        if f == "timeout":
            raise UnknownOutcome("cancel: RequestTimeout")
        cur = v.view(order.client_order_id)
        if cur is None or not cur.status.is_open:
            raise OrderRejected("-2011 Unknown order sent.")
        xid = cur.exchange_order_id
        assert xid is not None
        if f is not None and f.startswith("late_fill:"):
            v.execute(xid, cur.remaining * float(f.split(":", 1)[1]))
            cur = v.orders[xid]
        if cur.status in (S.ACCEPTED, S.PARTIALLY_FILLED):
            v.orders[xid] = replace(cur, status=S.CANCELED)
        if f == "die_after_cancel":
            raise Died("after the cancel, before its answer was journalled")
        if f == "timeout_after_cancel":
            raise UnknownOutcome("cancel: the answer was lost")
        return v.orders[xid]

    async def fetch_order(self, order: Order) -> Order | None:
        self.calls["fetch_order"] += 1
        await asyncio.sleep(0)
        self._common("fetch_order")
        return self.venue.view(order.client_order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        self._common("fetch_open_orders")
        self.venue._arrivals()
        return [o for o in self.venue.orders.values() if o.status.is_open and symbol in (None, o.symbol)]

    async def fetch_fills(self, symbol: str, since_ms: int | None) -> list[Fill]:
        self.calls["fetch_fills"] += 1
        self._common("fetch_fills")
        # like ccxt fetch_my_trades: the trades name the exchange order id, not the client id
        return [
            replace(f, client_order_id="")
            for f in self.venue.fills
            if f.symbol == symbol and (since_ms is None or f.timestamp >= since_ms)
        ]

    async def fetch_balances(self) -> dict[str, float]:
        self._common("fetch_balances")
        return dict(self.venue.balances)
