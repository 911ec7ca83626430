"""The broker protocol: what the order manager and the engine need from a venue (paper, replay, live).

Contract of every broker (asyncio; one broker object per session):

- ``submit(order)`` sends the order with ``order.client_order_id`` as the venue's client id (Binance
  ``newClientOrderId``) and returns the venue's view of it after the POST (status ACCEPTED, or already
  PARTIALLY_FILLED / FILLED / EXPIRED, with ``exchange_order_id``). It raises
  :class:`OrderRejected` when the venue refused the order (a definite answer: nothing is working),
  :class:`DuplicateOrder` (a subclass) when the venue says an *open* order already has this client id
  (Binance -2010 "Duplicate order sent."): the order exists, the caller must query it;
  :class:`UnknownOutcome` when the request may or may not have reached the venue (a timeout, a dropped connection
  after the POST, a 5xx, Binance -1007 "send status unknown"); and :class:`BrokerUnavailable` only when the
  request certainly did not leave (connection refused, not connected, rate limited before sending).
  A broker never retries a POST itself.
- ``cancel(order)`` returns the venue's view after the cancel (CANCELED, or FILLED when it filled first); it raises
  :class:`OrderRejected` when the venue does not know the order or it is no longer open (Binance -2011), and
  :class:`UnknownOutcome` / :class:`BrokerUnavailable` as above.
- ``market(symbol)`` returns the market's rules; it raises ``KeyError`` for a symbol the venue does not list.
- ``fetch_order(order)`` looks the order up **by client order id**; ``None`` means the venue does not know it.
- ``fetch_fills(symbol, since_ms)`` returns the account's executions in ``symbol`` since ``since_ms`` (ccxt
  ``fetch_my_trades``), each with the client order id of its order where the venue tells it.
- Orders returned carry the venue's status, ``filled`` and ``avg_price``; the order manager takes the filled
  amount from the fills themselves (the journal's truth), and the status from the venue.

:class:`MarketRules` holds one market's precision and limits (from a ccxt market, or given) and checks an order
before it is sent: rounding amounts down to the lot step (never more than asked), prices to the nearest tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol, runtime_checkable

from workbench.types import Fill, Order

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "DuplicateOrder",
    "MarketRuleError",
    "MarketRules",
    "OrderRejected",
    "UnknownOutcome",
]


class BrokerError(Exception):
    """Base of the errors a broker raises."""


class UnknownOutcome(BrokerError):
    """The request may or may not have reached the venue: resolve it by querying, never by resending."""


class OrderRejected(BrokerError):
    """The venue refused the request; ``reason`` says why (the venue's code and message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DuplicateOrder(OrderRejected):
    """The venue already has an open order with this client id (Binance -2010): query it, it exists."""


class BrokerUnavailable(BrokerError):
    """The venue cannot be reached; the request certainly did not leave."""


class MarketRuleError(ValueError):
    """An order that breaks a market's rules (min amount, min notional, step); names the symbol and the rule."""


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


@dataclass(frozen=True, slots=True)
class MarketRules:
    """One market's precision and limits. Steps are sizes (``0.00001``), ``None`` = no rounding."""

    symbol: str
    amount_step: float | None = None
    price_step: float | None = None
    min_amount: float = 0.0
    max_amount: float | None = None
    min_notional: float = 0.0

    @classmethod
    def from_ccxt(cls, market: dict[str, Any], tick_size: bool = True) -> MarketRules:
        """From a ccxt market (``exchange.markets[symbol]``). ``tick_size``: the exchange's precision mode is
        TICK_SIZE (Binance in ccxt 4: precision values are step sizes); else they count decimal places."""
        prec = market.get("precision") or {}
        limits = market.get("limits") or {}

        def step(v: Any) -> float | None:
            if v is None:
                return None
            return float(v) if tick_size else float(Decimal(1).scaleb(-int(v)))

        amount = limits.get("amount") or {}
        cost = limits.get("cost") or {}
        return cls(
            symbol=str(market["symbol"]),
            amount_step=step(prec.get("amount")),
            price_step=step(prec.get("price")),
            min_amount=float(amount.get("min") or 0.0),
            max_amount=None if amount.get("max") is None else float(amount["max"]),
            min_notional=float(cost.get("min") or 0.0),
        )

    def round_amount(self, amount: float) -> float:
        """``amount`` rounded down to the lot step (an order never exceeds what was asked or is held)."""
        if self.amount_step is None or amount <= 0:
            return float(amount)
        step = _dec(self.amount_step)
        # a hair of tolerance so that 0.3 / 0.1 = 2.9999999 rounds to 3 steps
        n = ((_dec(amount) / step) + Decimal("1e-9")).to_integral_value(rounding=ROUND_FLOOR)
        return float(n * step)

    def round_price(self, price: float) -> float:
        """``price`` rounded to the nearest tick."""
        if self.price_step is None or price <= 0:
            return float(price)
        step = _dec(self.price_step)
        n = (_dec(price) / step).to_integral_value(rounding=ROUND_HALF_EVEN)
        return float(max(n, Decimal(1)) * step)

    def check(self, amount: float, price: float | None) -> None:
        """Raise :class:`MarketRuleError` naming the symbol and the rule when ``amount`` (at ``price``, the
        limit price or the expected fill price of a market order) breaks the market's limits."""
        if not amount > 0:
            raise MarketRuleError(f"{self.symbol}: the amount must be positive, got {amount!r}")
        if self.amount_step is not None and self.round_amount(amount) < amount * (1 - 1e-9):
            raise MarketRuleError(
                f"{self.symbol}: amount {amount!r} is not a multiple of the lot step {self.amount_step!r} "
                f"(round it to {self.round_amount(amount)!r})"
            )
        if amount < self.min_amount * (1 - 1e-12):
            raise MarketRuleError(
                f"{self.symbol}: amount {amount!r} is below the minimum amount {self.min_amount!r}"
            )
        if self.max_amount is not None and amount > self.max_amount * (1 + 1e-12):
            raise MarketRuleError(
                f"{self.symbol}: amount {amount!r} is above the maximum amount {self.max_amount!r}"
            )
        if price is not None and self.min_notional and amount * price < self.min_notional * (1 - 1e-12):
            raise MarketRuleError(
                f"{self.symbol}: notional {amount * price:.8g} (amount {amount!r} x price {price!r}) is below the "
                f"minimum notional {self.min_notional!r}"
            )


@runtime_checkable
class Broker(Protocol):
    """A venue as the order manager sees it (see the module docstring for the contract)."""

    name: str

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def market(self, symbol: str) -> MarketRules: ...

    async def submit(self, order: Order) -> Order: ...

    async def cancel(self, order: Order) -> Order: ...

    async def fetch_order(self, order: Order) -> Order | None: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]: ...

    async def fetch_fills(self, symbol: str, since_ms: int | None) -> list[Fill]: ...

    async def fetch_balances(self) -> dict[str, float]: ...
