"""The live broker: signed orders through a ccxt async client (a real exchange, its testnet, or the replay
exchange), mapped onto the broker contract of :mod:`workbench.trading.brokers.base`.

* Orders are sent with ``newClientOrderId`` = the session's deterministic client order id; amounts and prices
  are rounded with the market's precision and checked against its min amount / min notional before sending.
* Error mapping for a POST: an exchange's definite refusal (``InvalidOrder``, ``InsufficientFunds``,
  ``BadRequest``, ``PermissionDenied``, ``AuthenticationError``) -> :class:`OrderRejected` (Binance -2010
  "Duplicate order sent." -> :class:`DuplicateOrder`); a rate limit answered before matching (HTTP 429/418,
  ``DDoSProtection``/``RateLimitExceeded``) -> :class:`BrokerUnavailable`; everything else that may have reached
  the venue (``RequestTimeout``, ``NetworkError``, ``ExchangeNotAvailable``, Binance -1007) ->
  :class:`UnknownOutcome`, which the order manager resolves by querying the client id, never by resending.
* Fees are booked in the asset the exchange charges (``fee.currency``: the quote, the base or BNB).
"""

from __future__ import annotations

from typing import Any

import ccxt

from workbench.trading.brokers.base import (
    BrokerUnavailable,
    DuplicateOrder,
    MarketRules,
    OrderRejected,
    UnknownOutcome,
)
from workbench.types import Fill, Order, OrderStatus, OrderType, Side, TimeInForce

__all__ = ["CcxtBroker", "order_from_ccxt"]

_STATUS = {
    "open": OrderStatus.ACCEPTED,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


def order_from_ccxt(o: dict[str, Any], template: Order | None = None, tag: str = "strategy") -> Order:
    """An :class:`Order` from a ccxt order structure (the venue's view)."""
    filled = float(o.get("filled") or 0.0)
    amount = float(o.get("amount") or (template.amount if template else filled) or 0.0)
    status = _STATUS.get(str(o.get("status")), OrderStatus.ACCEPTED)
    if status is OrderStatus.ACCEPTED and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    cid = o.get("clientOrderId") or (template.client_order_id if template else None) or str(o.get("id"))
    otype = OrderType.LIMIT if o.get("type") == "limit" else OrderType.MARKET
    price = o.get("price") if otype is OrderType.LIMIT else None
    tif = o.get("timeInForce")
    return Order(
        client_order_id=str(cid),
        symbol=str(o.get("symbol") or (template.symbol if template else "")),
        side=Side(str(o.get("side") or (template.side.value if template else "buy"))),
        type=otype,
        amount=amount if amount > 0 else (template.amount if template else 1e-12),
        price=float(price) if price else (template.price if template else None),
        time_in_force=TimeInForce(tif) if tif in ("GTC", "IOC", "FOK") else TimeInForce.GTC,
        status=status,
        filled=filled,
        avg_price=float(o["average"]) if o.get("average") else None,
        exchange_order_id=str(o.get("id")) if o.get("id") is not None else None,
        created_ms=int(o.get("timestamp") or (template.created_ms if template else 0)),
        updated_ms=int(o.get("lastUpdateTimestamp") or o.get("timestamp") or 0),
        tag=template.tag if template else tag,
        reduce_only=template.reduce_only if template else False,
    )


class CcxtBroker:
    name = "ccxt"

    def __init__(self, client: Any, *, tag_of: dict[str, str] | None = None) -> None:
        self.client = client
        self._rules: dict[str, MarketRules] = {}
        self._cid_by_eid: dict[str, str] = {}
        self._tag: dict[str, str] = dict(tag_of or {})

    async def connect(self) -> None:
        try:
            await self.client.load_markets()
        except ccxt.NetworkError as e:
            raise BrokerUnavailable(f"{self.client.id}: cannot load markets: {type(e).__name__}") from None

    async def close(self) -> None:
        await self.client.close()

    def market(self, symbol: str) -> MarketRules:
        if symbol not in self._rules:
            try:
                m = self.client.market(symbol)
            except ccxt.BadSymbol:
                raise OrderRejected(f"{self.client.id}: unknown market {symbol!r}") from None
            self._rules[symbol] = MarketRules.from_ccxt(
                m, tick_size=self.client.precisionMode == ccxt.TICK_SIZE
            )
        return self._rules[symbol]

    # ------------------------------------------------------------------ orders

    async def submit(self, order: Order) -> Order:
        rules = self.market(order.symbol)
        amount = rules.round_amount(order.amount)
        price = rules.round_price(order.price) if order.price is not None else None
        params: dict[str, Any] = {"newClientOrderId": order.client_order_id}
        if order.type is OrderType.LIMIT and order.time_in_force is not TimeInForce.GTC:
            params["timeInForce"] = order.time_in_force.value
        self._tag[order.client_order_id] = order.tag
        try:
            raw = await self.client.create_order(
                order.symbol, order.type.value, order.side.value, amount, price, params
            )
        except (ccxt.DDoSProtection, ccxt.RateLimitExceeded) as e:
            raise BrokerUnavailable(f"{self.client.id}: rate limited: {_short(e)}") from None
        except (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadRequest, ccxt.PermissionDenied) as e:
            msg = _short(e)
            if "Duplicate order" in msg or ("-2010" in msg and "uplicate" in msg):
                raise DuplicateOrder(f"{self.client.id}: {msg}") from None
            raise OrderRejected(f"{self.client.id}: {msg}") from None
        except ccxt.AuthenticationError as e:
            raise OrderRejected(f"{self.client.id}: authentication failed: {_short(e)}") from None
        except (ccxt.NetworkError, ccxt.ExchangeError) as e:
            msg = _short(e)
            if "uplicate order" in msg:
                raise DuplicateOrder(f"{self.client.id}: {msg}") from None
            raise UnknownOutcome(f"{self.client.id}: {type(e).__name__}: {msg}") from None
        o = order_from_ccxt(raw, order)
        if o.exchange_order_id:
            self._cid_by_eid[o.exchange_order_id] = o.client_order_id
        return _merge(order, o)

    async def cancel(self, order: Order) -> Order:
        try:
            raw = await self.client.cancel_order(
                order.exchange_order_id, order.symbol, {"origClientOrderId": order.client_order_id}
            )
        except (ccxt.OrderNotFound, ccxt.InvalidOrder) as e:
            raise OrderRejected(f"{self.client.id}: {_short(e)}") from None
        except (ccxt.DDoSProtection, ccxt.RateLimitExceeded) as e:
            raise BrokerUnavailable(f"{self.client.id}: rate limited: {_short(e)}") from None
        except (ccxt.NetworkError, ccxt.ExchangeError) as e:
            raise UnknownOutcome(f"{self.client.id}: {type(e).__name__}: {_short(e)}") from None
        return _merge(order, order_from_ccxt(raw, order))

    async def fetch_order(self, order: Order) -> Order | None:
        try:
            raw = await self.client.fetch_order(
                order.exchange_order_id, order.symbol, {"origClientOrderId": order.client_order_id}
            )
        except ccxt.OrderNotFound:
            return None
        except (ccxt.NetworkError, ccxt.ExchangeError) as e:
            if "-2013" in str(e) or "does not exist" in str(e):
                return None
            raise UnknownOutcome(f"{self.client.id}: {type(e).__name__}: {_short(e)}") from None
        o = order_from_ccxt(raw, order)
        if o.exchange_order_id:
            self._cid_by_eid[o.exchange_order_id] = o.client_order_id
        return _merge(order, o)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        try:
            raw = await self.client.fetch_open_orders(symbol)
        except (ccxt.NetworkError, ccxt.ExchangeError) as e:
            raise BrokerUnavailable(f"{self.client.id}: {type(e).__name__}: {_short(e)}") from None
        out = []
        for r in raw:
            o = order_from_ccxt(r, tag=self._tag.get(str(r.get("clientOrderId")), "external"))
            if o.exchange_order_id:
                self._cid_by_eid[o.exchange_order_id] = o.client_order_id
            out.append(o)
        return out

    async def fetch_fills(self, symbol: str, since_ms: int | None) -> list[Fill]:
        try:
            trades = await self.client.fetch_my_trades(symbol, since_ms)
        except (ccxt.NetworkError, ccxt.ExchangeError) as e:
            raise BrokerUnavailable(f"{self.client.id}: {type(e).__name__}: {_short(e)}") from None
        out = []
        for t in trades:
            eid = str(t.get("order")) if t.get("order") is not None else None
            cid = self._cid_by_eid.get(eid or "")
            if cid is None and eid is not None:
                try:
                    raw = await self.client.fetch_order(eid, symbol)
                    cid = raw.get("clientOrderId") or eid
                    self._cid_by_eid[eid] = cid
                except (ccxt.NetworkError, ccxt.ExchangeError):
                    cid = eid
            fee = t.get("fee") or {}
            out.append(
                Fill(
                    client_order_id=str(cid),
                    symbol=symbol,
                    side=Side(t["side"]),
                    amount=float(t["amount"]),
                    price=float(t["price"]),
                    fee=float(fee.get("cost") or 0.0),
                    fee_currency=str(fee.get("currency") or symbol.split("/")[1].split(":")[0]),
                    timestamp=int(t["timestamp"]),
                    trade_id=str(t["id"]),
                    exchange_order_id=eid,
                    liquidity=str(t.get("takerOrMaker") or "taker"),
                    tag=self._tag.get(str(cid), "strategy"),
                )
            )
        return out

    async def fetch_balances(self) -> dict[str, float]:
        try:
            b = await self.client.fetch_balance()
        except (ccxt.NetworkError, ccxt.ExchangeError) as e:
            raise BrokerUnavailable(f"{self.client.id}: {type(e).__name__}: {_short(e)}") from None
        return {k: float(v) for k, v in (b.get("total") or {}).items() if v is not None}


def _merge(sent: Order, venue: Order) -> Order:
    """The venue's status and ids on the record that was sent (amount and tag stay ours)."""
    from dataclasses import replace

    return replace(
        sent,
        status=venue.status,
        exchange_order_id=venue.exchange_order_id or sent.exchange_order_id,
        filled=venue.filled,
        avg_price=venue.avg_price,
        updated_ms=venue.updated_ms or sent.updated_ms,
    )


def _short(e: BaseException) -> str:
    return str(e)[:300]
