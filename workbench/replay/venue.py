"""The replay venue: one spot account, its orders and trades, matched against the replayed prices.

Matching (the fill model is :func:`workbench.sim.fills.market_fill`, the one the backtest uses):

* **MARKET** fills at once, whole, at the current price ``px`` with ``market_fill(cash, ±qty, px, taker,
  slippage)``: a buy at ``px·(1+slippage)``, a sell at ``px·(1−slippage)``, the taker fee on the notional.
  ``quoteOrderQty`` buys/sells ``quoteOrderQty / fill price`` rounded down to the lot step.
* **LIMIT** (GTC) that is marketable when it arrives (a buy at or above ``px``, a sell at or below) fills at once
  as a taker at ``min(limit, px·(1+slippage))`` (a sell: ``max(limit, px·(1−slippage))``). Otherwise it rests and
  fills, whole, at its limit price with the maker fee at the first replay time the price path touches the limit.
  IOC/FOK limits that are not marketable expire. **LIMIT_MAKER** that would match is rejected (-2010).
* Fees are charged in the quote currency. A resting buy locks ``qty·price·(1+max(maker, taker))`` quote, a
  resting sell locks ``qty`` base. An order the free balance cannot pay is rejected with -2010 "Account has
  insufficient balance for requested action.".
* ``newClientOrderId`` is unique among *open* orders only (a repeat while the first is open: -2010 "Duplicate
  order sent."; after it filled or was cancelled the id is accepted again); lookups by client id find the latest
  order with that id.
* A trade's price and commission are rounded to the 8 decimals it is reported with, and the balances change by
  exactly those numbers: the balances equal the sum of the reported trades (as at Binance).

State (balances, orders, trades, id counters, the replay time and the test keys) is kept in memory and, when
a state file is given, written to it atomically (temp file, fsync, rename; mode 0600) after every change, so a
restarted replay exchange keeps its orders and continues its clock.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.replay.market import MarketSeries
from workbench.sim.fills import market_fill

__all__ = ["STATE_VERSION", "ApiError", "ReplayOrder", "ReplayTrade", "Venue"]

STATE_VERSION = 1
CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
OPEN = ("NEW", "PARTIALLY_FILLED")


class ApiError(Exception):
    """A Binance-style error answer: HTTP status and ``{"code": ..., "msg": ...}``."""

    def __init__(self, status: int, code: int, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


@dataclass
class ReplayOrder:
    symbol: str  # market id, 'BTCUSDT'
    orderId: int
    clientOrderId: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | LIMIT_MAKER
    timeInForce: str
    price: float
    origQty: float
    time: int
    status: str = "NEW"
    executedQty: float = 0.0
    cummulativeQuoteQty: float = 0.0
    updateTime: int = 0
    origQuoteOrderQty: float = 0.0
    locked: float = 0.0  # what this order holds locked (quote for a buy, base for a sell)
    checked_ms: int = 0  # the price path has been checked against this order up to here
    fills: list[int] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


@dataclass
class ReplayTrade:
    id: int
    symbol: str
    orderId: int
    side: str
    price: float
    qty: float
    quoteQty: float
    commission: float
    commissionAsset: str
    time: int
    isMaker: bool


class Venue:
    """Balances, orders and matching; not thread-safe by itself (the server holds one lock around it)."""

    def __init__(
        self,
        markets: dict[str, MarketSeries],
        balances: dict[str, float],
        *,
        maker_fee: float,
        taker_fee: float,
        slippage: float,
        min_notional: float = 5.0,
        state_path: str | os.PathLike[str] | None = None,
    ):
        self.markets = markets  # by market id
        self.maker_fee, self.taker_fee, self.slippage = float(maker_fee), float(taker_fee), float(slippage)
        self.min_notional = float(min_notional)
        self.free: dict[str, float] = {}
        self.locked: dict[str, float] = {}
        for asset, amount in balances.items():
            if not math.isfinite(amount) or amount < 0:
                raise ValueError(f"replay exchange: balance {asset}={amount} must be a number >= 0")
            self.free[asset.upper()] = float(amount)
        for m in markets.values():
            for a in (m.base, m.quote):
                self.free.setdefault(a, 0.0)
        self.locked = dict.fromkeys(self.free, 0.0)
        self.orders: list[ReplayOrder] = []
        self.trades: list[ReplayTrade] = []
        self.next_order_id = 1
        self.next_trade_id = 1
        self.clock_ms: int | None = None
        self.keys: dict[str, str] | None = None
        self.state_path = Path(state_path) if state_path is not None else None

    # ------------------------------------------------------------------ persistence
    def load(self) -> bool:
        """Read the state file if there is one; True if state was restored."""
        if self.state_path is None or not self.state_path.exists():
            return False
        try:
            raw = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"replay exchange: cannot read state file {self.state_path}: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            raise ValueError(
                f"replay exchange: state file {self.state_path} has version {raw.get('version')!r}, "
                f"expected {STATE_VERSION}"
            )
        try:
            self.free = {k: float(v) for k, v in raw["free"].items()}
            self.locked = {k: float(v) for k, v in raw["locked"].items()}
            self.orders = [ReplayOrder(**o) for o in raw["orders"]]
            self.trades = [ReplayTrade(**t) for t in raw["trades"]]
            self.next_order_id = int(raw["next_order_id"])
            self.next_trade_id = int(raw["next_trade_id"])
            self.clock_ms = int(raw["clock_ms"]) if raw.get("clock_ms") is not None else None
            self.keys = raw.get("keys")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"replay exchange: state file {self.state_path} is malformed: {exc!r}") from exc
        unknown = sorted({o.symbol for o in self.orders if o.is_open and o.symbol not in self.markets})
        if unknown:
            raise ValueError(
                f"replay exchange: state file {self.state_path} has open orders on {', '.join(unknown)}, "
                "which this replay does not serve: add those symbols or use another state file"
            )
        for m in self.markets.values():
            for a in (m.base, m.quote):
                self.free.setdefault(a, 0.0)
                self.locked.setdefault(a, 0.0)
        return True

    def save(self, clock_ms: int) -> None:
        if self.state_path is None:
            return
        self.clock_ms = clock_ms
        state = {
            "version": STATE_VERSION,
            "clock_ms": clock_ms,
            "free": self.free,
            "locked": self.locked,
            "orders": [asdict(o) for o in self.orders],
            "trades": [asdict(t) for t in self.trades],
            "next_order_id": self.next_order_id,
            "next_trade_id": self.next_trade_id,
            "keys": self.keys,
        }
        path = self.state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(state, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # ------------------------------------------------------------------ lookups
    def open_orders(self, symbol: str | None = None) -> list[ReplayOrder]:
        return [o for o in self.orders if o.is_open and (symbol is None or o.symbol == symbol)]

    def find(self, symbol: str, order_id: int | None, client_id: str | None) -> ReplayOrder | None:
        for o in reversed(self.orders):
            if o.symbol != symbol:
                continue
            if order_id is not None and o.orderId != order_id:
                continue
            if client_id is not None and o.clientOrderId != client_id:
                continue
            return o
        return None

    # ------------------------------------------------------------------ placing
    def _check_filters(self, m: MarketSeries, qty: float, price: float | None, ref_px: float) -> None:
        if qty < m.step - 1e-12 or abs(qty / m.step - round(qty / m.step)) > 1e-6:
            raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
        if price is not None and (price <= 0 or abs(price / m.tick - round(price / m.tick)) > 1e-6):
            raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
        notional = qty * (price if price is not None else ref_px)
        if notional < self.min_notional - 1e-9:
            raise ApiError(400, -1013, "Filter failure: NOTIONAL")

    def place(
        self,
        now: int,
        *,
        symbol: str,
        side: str,
        type: str,
        quantity: float | None,
        price: float | None,
        time_in_force: str | None,
        client_id: str | None,
        quote_qty: float | None = None,
    ) -> ReplayOrder:
        """Validate, accept and (where it matches) fill one order at replay time ``now``."""
        m = self.markets[symbol]
        px = m.price(now)
        if px is None:
            raise ApiError(400, -1013, f"Market is closed: no {m.symbol} data before the replay time.")
        if client_id is not None:
            if not CLIENT_ID_RE.match(client_id):
                raise ApiError(
                    400,
                    -1100,
                    "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                    "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
                )
            if any(o.clientOrderId == client_id for o in self.open_orders()):
                raise ApiError(400, -2010, "Duplicate order sent.")
        else:
            client_id = f"replay{self.next_order_id:08d}"
        buy = side == "BUY"
        if type == "MARKET":
            if price is not None:
                raise ApiError(400, -1106, "Parameter 'price' sent when not required.")
            fill_px = px * (1 + self.slippage) if buy else px * (1 - self.slippage)
            if quantity is None:
                if quote_qty is None or quote_qty <= 0:
                    raise ApiError(
                        400,
                        -1102,
                        "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
                    )
                quantity = m.round_qty(quote_qty / fill_px)
            self._check_filters(m, quantity, None, px)
            tif = "GTC"
        else:
            if price is None:
                raise ApiError(
                    400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed."
                )
            if quantity is None:
                raise ApiError(
                    400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."
                )
            if type == "LIMIT" and time_in_force is None:
                raise ApiError(
                    400,
                    -1102,
                    "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
                )
            tif = time_in_force or "GTC"
            if tif not in ("GTC", "IOC", "FOK"):
                raise ApiError(400, -1115, "Invalid timeInForce.")
            self._check_filters(m, quantity, price, px)
        marketable = type == "MARKET" or (price is not None and (price >= px if buy else price <= px))
        if type == "LIMIT_MAKER" and marketable:
            raise ApiError(400, -2010, "Order would immediately match and take.")

        # what the order needs, checked against the free balance
        if buy:
            if type == "MARKET":
                ref = px * (1 + self.slippage)
            elif marketable:
                ref = min(float(price), px * (1 + self.slippage))  # type: ignore[arg-type]
            else:
                ref = float(price)  # type: ignore[arg-type]
            need = quantity * ref * (1 + max(self.maker_fee, self.taker_fee))
            if need > self.free[m.quote] + 1e-9:
                raise ApiError(400, -2010, "Account has insufficient balance for requested action.")
        elif quantity > self.free[m.base] + 1e-12:
            raise ApiError(400, -2010, "Account has insufficient balance for requested action.")

        order = ReplayOrder(
            symbol=symbol,
            orderId=self.next_order_id,
            clientOrderId=client_id,
            side=side,
            type=type,
            timeInForce=tif,
            price=float(price) if price is not None else 0.0,
            origQty=float(quantity),
            time=now,
            updateTime=now,
            origQuoteOrderQty=float(quote_qty or 0.0),
            checked_ms=now,
        )
        self.next_order_id += 1
        self.orders.append(order)
        if marketable:
            if type == "MARKET":
                self._fill(
                    order, m, now, ref_px=px, slippage=self.slippage, fee_rate=self.taker_fee, maker=False
                )
            else:
                slipped = px * (1 + self.slippage) if buy else px * (1 - self.slippage)
                fill_px = min(order.price, slipped) if buy else max(order.price, slipped)
                self._fill(order, m, now, ref_px=fill_px, slippage=0.0, fee_rate=self.taker_fee, maker=False)
        elif tif in ("IOC", "FOK"):
            order.status = "EXPIRED"
        else:
            self._lock(order, m)
        return order

    def _lock(self, order: ReplayOrder, m: MarketSeries) -> None:
        if order.side == "BUY":
            amount = order.origQty * order.price * (1 + max(self.maker_fee, self.taker_fee))
            asset = m.quote
        else:
            amount, asset = order.origQty, m.base
        amount = min(amount, self.free[asset])
        self.free[asset] -= amount
        self.locked[asset] += amount
        order.locked = amount

    def _unlock(self, order: ReplayOrder, m: MarketSeries) -> None:
        asset = m.quote if order.side == "BUY" else m.base
        self.locked[asset] = max(0.0, self.locked[asset] - order.locked)
        self.free[asset] += order.locked
        order.locked = 0.0

    def _fill(
        self,
        order: ReplayOrder,
        m: MarketSeries,
        t: int,
        *,
        ref_px: float,
        slippage: float,
        fee_rate: float,
        maker: bool,
    ) -> None:
        """Fill the whole order with the shared fill model and book the trade."""
        self._unlock(order, m)
        units = order.origQty if order.side == "BUY" else -order.origQty
        cash = self.free[m.quote]
        _, filled, fill_px, fee = market_fill(cash, units, ref_px, fee_rate, slippage)
        qty = abs(filled)
        # book exactly what the trade reports (8 decimals, as Binance does): the balances then equal the sum of
        # the account's trades, which is how a client rebuilds them
        fill_px, fee = round(float(fill_px), 8), round(float(fee), 8)
        self.free[m.quote] = cash - qty * fill_px - fee if filled > 0 else cash + qty * fill_px - fee
        self.free[m.base] += filled
        if self.free[m.base] < 0 and self.free[m.base] > -1e-12:
            self.free[m.base] = 0.0
        trade = ReplayTrade(
            id=self.next_trade_id,
            symbol=order.symbol,
            orderId=order.orderId,
            side=order.side,
            price=float(fill_px),
            qty=float(qty),
            quoteQty=float(qty * fill_px),
            commission=float(fee),
            commissionAsset=m.quote,
            time=t,
            isMaker=maker,
        )
        self.next_trade_id += 1
        self.trades.append(trade)
        order.fills.append(trade.id)
        order.executedQty = float(qty)
        order.cummulativeQuoteQty = float(qty * fill_px)
        order.status = "FILLED" if qty >= order.origQty - 1e-12 else "PARTIALLY_FILLED"
        order.updateTime = t

    def cancel(self, order: ReplayOrder, now: int) -> ReplayOrder:
        if not order.is_open:
            raise ApiError(400, -2011, "Unknown order sent.")
        self._unlock(order, self.markets[order.symbol])
        order.status = "CANCELED"
        order.updateTime = now
        return order

    # ------------------------------------------------------------------ matching as the clock runs
    def match(self, now: int) -> list[ReplayOrder]:
        """Fill every resting order whose limit the price path touched up to ``now``; returns those filled."""
        touched: list[tuple[int, ReplayOrder]] = []
        for o in self.open_orders():
            if o.checked_ms >= now:
                continue
            m = self.markets[o.symbol]
            t = m.first_touch(o.checked_ms, now, o.price, o.side == "BUY")
            o.checked_ms = now
            if t is not None:
                touched.append((t, o))
        touched.sort(key=lambda x: (x[0], x[1].orderId))
        for t, o in touched:
            m = self.markets[o.symbol]
            self._fill(o, m, t, ref_px=o.price, slippage=0.0, fee_rate=self.maker_fee, maker=True)
        return [o for _, o in touched]
