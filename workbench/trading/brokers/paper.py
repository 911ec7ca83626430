"""The paper broker: orders filled in the engine against the live (or replayed) market, with the backtest's fill
and cost model (:mod:`workbench.sim.fills`), so that a paper session and a backtest price an order alike.

Rules (documented for users in ``docs/trading.md``):

* **Market orders** fill at once, in full, at the reference price (stamped with the reference's time when the
  engine gives one) with slippage against the trader
  (:func:`~workbench.sim.fills.market_price`) and the taker fee. The reference is the price the engine sized the
  order at (``set_reference``: a candle strategy's next-bar open) when given, else the last traded price (the
  ask for a buy and the bid for a sell when a book is known). A buy larger than the quote balance is cut to what
  the balance pays for, fee included, as in the backtest (the order then ends EXPIRED with the rest unfilled).
* **Limit orders** rest until the market trades through them: a buy fills when a trade (or a candle's low) is
  at or below its price, a sell when at or above, at the limit price with the maker fee and no slippage. Each
  market update fills at most ``participation`` × the volume traded there (partial fills), never more than the
  order's remainder. IOC/FOK limit orders fill what crosses at once and expire the rest (FOK: all or nothing).
* **Latency**: ``latency_ms`` delays the acceptance of each order (``asyncio.sleep``), as a round trip would.
* Fees are charged in the quote currency. Balances change only by fills. The broker's state (balances, open
  orders, fills) is rebuilt after a restart from the journal by :meth:`restore`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Mapping

from workbench.sim.fills import market_price
from workbench.trading.brokers.base import MarketRules, OrderRejected
from workbench.types import Fill, Order, OrderStatus, OrderType, Side, TimeInForce

__all__ = ["PaperBroker"]


class PaperBroker:
    name = "paper"

    def __init__(
        self,
        markets: Mapping[str, MarketRules],
        balances: Mapping[str, float],
        *,
        taker_fee: float,
        maker_fee: float,
        slippage: float,
        latency_ms: float = 0.0,
        participation: float = 1.0,
        clock: Callable[[], int],
        on_fill: Callable[[Fill, Order], None] | None = None,
    ) -> None:
        self.markets = dict(markets)
        self.balances: dict[str, float] = dict(balances)
        self.taker_fee = taker_fee
        self.maker_fee = maker_fee
        self.slippage = slippage
        self.latency_ms = latency_ms
        self.participation = participation
        self.clock = clock
        self.on_fill = on_fill
        self._orders: dict[str, Order] = {}
        self._fills: list[Fill] = []
        self._last: dict[str, float] = {}
        self._bid: dict[str, float] = {}
        self._ask: dict[str, float] = {}
        self._ref: dict[str, float] = {}
        self._ref_ts: dict[str, int] = {}
        self._ids = itertools.count(1)
        # client ids of the limit orders that may rest, per symbol: a price update looks at these, not at every
        # order the session ever sent (closed ones leave the index when next seen)
        self._resting: dict[str, dict[str, None]] = {}

    # ------------------------------------------------------------------ broker protocol

    async def connect(self) -> None:
        # load the fill model's compiled kernel now (numba's cache: about 0.7 s in a fresh process), not inside
        # the first order's fill
        market_price(1.0, 1.0, self.slippage)

    async def close(self) -> None:
        return None

    def market(self, symbol: str) -> MarketRules:
        try:
            return self.markets[symbol]
        except KeyError:
            raise OrderRejected(f"paper: unknown market {symbol!r}") from None

    async def submit(self, order: Order) -> Order:
        if order.client_order_id in self._orders and self._orders[order.client_order_id].status.is_open:
            from workbench.trading.brokers.base import DuplicateOrder

            raise DuplicateOrder(f"paper: an open order already has client id {order.client_order_id}")
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000.0)
        rules = self.market(order.symbol)
        ref = self._reference(order.symbol, order.side)
        if ref is None:
            raise OrderRejected(f"paper: no price for {order.symbol} yet")
        try:
            rules.check(order.amount, order.price if order.type is OrderType.LIMIT else ref)
        except ValueError as e:
            raise OrderRejected(f"paper: {e}") from None
        now = self.clock()
        if order.status is OrderStatus.INITIALIZED:  # the order manager sends SUBMITTED orders; tests may not
            order = order.with_status(OrderStatus.SUBMITTED, ts_ms=now)
        o = order.with_status(OrderStatus.ACCEPTED, ts_ms=now, exchange_order_id=f"P{next(self._ids)}")
        self._orders[o.client_order_id] = o
        if o.type is OrderType.LIMIT:
            self._resting.setdefault(o.symbol, {})[o.client_order_id] = None
        if o.type is OrderType.MARKET:
            self._fill_market(o, ref)
        else:
            self._cross(o.symbol, self._last.get(o.symbol), None, taker=True)
            o = self._orders[o.client_order_id]
            if o.time_in_force in (TimeInForce.IOC, TimeInForce.FOK) and o.status.is_open:
                self._orders[o.client_order_id] = o.with_status(
                    OrderStatus.EXPIRED, ts_ms=now, reason="IOC/FOK"
                )
        self._ref.pop(order.symbol, None)
        self._ref_ts.pop(order.symbol, None)
        return self._orders[o.client_order_id]

    async def cancel(self, order: Order) -> Order:
        o = self._orders.get(order.client_order_id)
        if o is None or not o.status.is_open:
            raise OrderRejected(
                f"paper: order {order.client_order_id} is not open (-2011 Unknown order sent.)"
            )
        o = o.with_status(OrderStatus.CANCELED, ts_ms=self.clock())
        self._orders[o.client_order_id] = o
        return o

    async def fetch_order(self, order: Order) -> Order | None:
        return self._orders.get(order.client_order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return [
            o for o in self._orders.values() if o.status.is_open and (symbol is None or o.symbol == symbol)
        ]

    async def fetch_fills(self, symbol: str, since_ms: int | None) -> list[Fill]:
        return [
            f for f in self._fills if f.symbol == symbol and (since_ms is None or f.timestamp >= since_ms)
        ]

    async def fetch_balances(self) -> dict[str, float]:
        return dict(self.balances)

    # ------------------------------------------------------------------ market data in

    def set_reference(self, symbol: str, price: float, ts_ms: int | None = None) -> None:
        """The price the next market order in ``symbol`` is filled at (before slippage), and the time its fill is
        stamped with (a candle strategy's order sized at a bar's open fills at that open, at that time)."""
        self._ref[symbol] = float(price)
        if ts_ms is not None:
            self._ref_ts[symbol] = int(ts_ms)

    def on_price(
        self,
        symbol: str,
        last: float | None = None,
        bid: float | None = None,
        ask: float | None = None,
        volume: float | None = None,
        low: float | None = None,
        high: float | None = None,
    ) -> None:
        """A market update: a trade (``last``, ``volume``), a book top (``bid``/``ask``) or a candle update
        (``low``/``high``/``last``=close, ``volume``). Resting limit orders that the update crosses fill."""
        if bid is not None:
            self._bid[symbol] = bid
        if ask is not None:
            self._ask[symbol] = ask
        if last is not None:
            self._last[symbol] = last
        lo = low if low is not None else last
        hi = high if high is not None else last
        if lo is not None or hi is not None:
            self._cross(symbol, lo, hi, volume=volume)

    def last_price(self, symbol: str) -> float | None:
        return self._last.get(symbol)

    # ------------------------------------------------------------------ state

    def restore(self, orders: Iterable[Order], fills: Iterable[Fill]) -> None:
        """Rebuild after a restart: the orders (open ones keep working) and the fills (balances follow)."""
        for o in orders:
            self._orders[o.client_order_id] = o
            if o.type is OrderType.LIMIT and o.status.is_open:
                self._resting.setdefault(o.symbol, {})[o.client_order_id] = None
        for f in fills:
            self._book(f)

    # ------------------------------------------------------------------ internals

    def _reference(self, symbol: str, side: Side) -> float | None:
        if symbol in self._ref:
            return self._ref[symbol]
        book = self._ask if side is Side.BUY else self._bid
        return book.get(symbol, self._last.get(symbol))

    def _quote(self, symbol: str) -> tuple[str, str]:
        base, _, quote = symbol.partition("/")
        return base, quote.split(":", 1)[0]

    def _fill_market(self, o: Order, ref: float) -> None:
        price = market_price(ref, o.side.sign * o.amount, self.slippage)
        amount = o.amount
        base, quote = self._quote(o.symbol)
        if o.side is Side.BUY:
            cash = self.balances.get(quote, 0.0)
            if amount * price * (1 + self.taker_fee) > cash:
                amount = self.market(o.symbol).round_amount(max(cash, 0.0) / (price * (1 + self.taker_fee)))
        elif amount > self.balances.get(base, 0.0) + 1e-12:
            amount = self.market(o.symbol).round_amount(max(self.balances.get(base, 0.0), 0.0))
        if amount <= 0:
            self._orders[o.client_order_id] = o.with_status(
                OrderStatus.EXPIRED, ts_ms=self.clock(), reason="insufficient balance"
            )
            return
        self._execute(o, amount, price, self.taker_fee, "taker")
        cur = self._orders[o.client_order_id]
        if cur.status.is_open:  # cut by the balance: the rest expires
            self._orders[o.client_order_id] = cur.with_status(
                OrderStatus.EXPIRED, ts_ms=self.clock(), reason="insufficient balance for the rest"
            )

    def _cross(
        self,
        symbol: str,
        low: float | None,
        high: float | None,
        volume: float | None = None,
        taker: bool = False,
    ) -> None:
        if low is None and high is None:
            return
        lo = low if low is not None else high
        hi = high if high is not None else low
        ids = self._resting.get(symbol)
        if not ids:
            return
        for cid in [c for c in ids if not self._orders[c].status.is_open]:
            del ids[cid]
        budget = None if volume is None else max(volume, 0.0) * self.participation
        for o in sorted((self._orders[c] for c in ids), key=lambda x: x.created_ms):
            if not o.status.is_open:
                continue
            crosses = (o.side is Side.BUY and lo <= o.price) or (o.side is Side.SELL and hi >= o.price)  # type: ignore[operator]
            if not crosses:
                continue
            amount = o.remaining
            if budget is not None:
                amount = min(amount, budget)
            if o.time_in_force is TimeInForce.FOK and amount < o.remaining:
                continue
            amount = self.market(symbol).round_amount(amount) if amount < o.remaining else amount
            if amount <= 0:
                continue
            fee = self.taker_fee if taker else self.maker_fee
            self._execute(o, amount, float(o.price), fee, "taker" if taker else "maker")  # type: ignore[arg-type]
            if budget is not None:
                budget -= amount

    def _execute(self, o: Order, amount: float, price: float, fee_rate: float, liquidity: str) -> None:
        n = len(self._fills) + 1
        f = Fill(
            client_order_id=o.client_order_id,
            symbol=o.symbol,
            side=o.side,
            amount=amount,
            price=price,
            fee=amount * price * fee_rate,
            fee_currency=self._quote(o.symbol)[1],
            timestamp=self._ref_ts.get(o.symbol, self.clock()) if liquidity == "taker" else self.clock(),
            trade_id=f"{o.exchange_order_id}-{n}",
            exchange_order_id=o.exchange_order_id,
            liquidity=liquidity,
            tag=o.tag,
        )
        self._book(f)
        self._orders[o.client_order_id] = self._orders[o.client_order_id].with_fill(f)
        if self.on_fill is not None:
            self.on_fill(f, self._orders[o.client_order_id])

    def _book(self, f: Fill) -> None:
        self._fills.append(f)
        base, quote = self._quote(f.symbol)
        self.balances[base] = self.balances.get(base, 0.0) + f.signed_amount
        self.balances[quote] = self.balances.get(quote, 0.0) - f.signed_amount * f.price
        self.balances[f.fee_currency] = self.balances.get(f.fee_currency, 0.0) - f.fee
