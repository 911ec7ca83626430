"""Client order ids and the order manager: every order's life, journalled, never sent twice.

Client order ids (:func:`client_order_id`) are deterministic: the same (session, strategy, symbol, bar, sequence)
gives the same id, so an engine restarted on the same bar recreates the same intent and the manager recognises it
instead of sending it again. An id is ``<strategy prefix>.<24 base32 characters of a BLAKE2b hash>``, at most 35
characters of ``[.A-Z:/a-z0-9_-]`` (Binance's ``newClientOrderId`` rule: 36 characters); 120 hash bits make a
collision between different inputs practically impossible. Manual orders: :func:`manual_order_id` (strategy
``"manual"``, the command's sequence number), so a command processed twice after a crash is still one order.

The order manager (:class:`OrderManager`) owns the :class:`~workbench.types.Order` records; every change goes
through ``Order.with_status`` / ``with_fill`` (the state table of :mod:`workbench.types`) and is journalled before
anything else happens:

- ``submit``: INITIALIZED journalled; the market's rules checked (a breach: DENIED, never sent; the risk manager
  is the caller's, which journals a refusal with :meth:`OrderManager.deny`); SUBMITTED journalled **before** the
  broker call; then the venue's answer: ACCEPTED / PARTIALLY_FILLED / FILLED / EXPIRED, or REJECTED with the
  venue's reason. An id the manager already knows (beyond INITIALIZED) is never sent again: ``submit`` returns
  its current state.
- Unknown outcome (:class:`~workbench.trading.brokers.base.UnknownOutcome`: a timeout, a dropped connection after
  the POST, a 5xx, Binance -1007; or any unexpected error of the broker call): resolved by
  ``broker.fetch_order`` (by client id), retried with exponential backoff, **never by resending**. Only when the
  venue says it does not know the id and the outcome window (``outcome_window_s`` after SUBMITTED, longer than the
  venue's receive window: Binance drops a request older than ``recvWindow``, 5 s by default; measured on the
  session's clock, and on the monotonic wall clock for an order this process sent) has passed is the
  order marked REJECTED with reason "not found at the venue". When the venue cannot be asked, the order stays
  SUBMITTED (counted as open) and :meth:`OrderManager.resolve_pending` (the engine's timer) or
  :meth:`OrderManager.recover` (a restart) tries again. A :class:`~workbench.trading.brokers.base.DuplicateOrder`
  answer (-2010: an open order has this id) is resolved the same way.
- Fills (:meth:`OrderManager.on_fill`): deduplicated by (symbol, trade id); the fill and the order after it are
  journalled in one transaction. A fill from the venue that names only the exchange order id is matched to its
  order; it takes the order's tag. A fill of an order the session does not know is external: reported, ignored. A
  fill the state table cannot place (an order already marked REJECTED) is still recorded (fills are the truth the
  portfolio is built from) and reported.
- Order updates from the venue (:meth:`OrderManager.on_order_update`) set the status; the filled amount comes from
  the fills only: when the venue reports more filled than the fills seen, the missing fills are fetched
  (``broker.fetch_fills``). Status never moves back (a stale ACCEPTED after a fill is ignored).
- ``cancel``: an order whose outcome is still unknown is resolved first; PENDING_CANCEL journalled before the
  broker call; the venue's view afterwards (CANCELED, or FILLED when it filled first; a refused cancel puts the
  order back to ACCEPTED). Fills may arrive after the cancel: CANCELED orders take late fills (the table allows it).
- ``replace`` (cancel/replace): the replacement is sent only after the cancel is confirmed (CANCELED or EXPIRED),
  for the remaining amount unless another is given; a fill arriving after that confirmation is a late fill of the
  old order, as at the venue.
- Order timeouts: :meth:`OrderManager.expire_stale` cancels working limit orders older than ``order_timeout_s``.
- ``recover`` at start: orders reloaded from the journal; INITIALIZED ones (never sent) are DENIED ("never sent");
  every open order (SUBMITTED, ACCEPTED, PARTIALLY_FILLED, PENDING_CANCEL) is queried at the venue; fills since the
  last journalled one are fetched for every symbol the session traded; open orders at the venue with ids the
  session does not know are reported as external and left alone; orders whose state or fills could not be
  established before (kept in the journal's meta, ``orders.unresolved``) are queried again even when closed
  (a canceled order's late fill). The :class:`RecoveryReport` says what could not be reconciled (``ok`` is
  ``False`` then, and the engine refuses to trade).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Final

from workbench.trading.brokers.base import (
    Broker,
    BrokerError,
    BrokerUnavailable,
    DuplicateOrder,
    MarketRuleError,
    OrderRejected,
)
from workbench.trading.journal import Journal, fill_key, now_ms
from workbench.types import ORDER_TRANSITIONS, Fill, Order, OrderStateError, OrderStatus, OrderType

__all__ = ["CLIENT_ID_RE", "OrderManager", "RecoveryReport", "client_order_id", "manual_order_id"]

log = logging.getLogger(__name__)

CLIENT_ID_RE: Final = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_PREFIX_BAD: Final = re.compile(r"[^A-Za-z0-9_-]")
_EPS: Final = 1e-9
_S = OrderStatus
UNRESOLVED_META: Final = "orders.unresolved"
"""Journal meta key: the client ids whose state or fills at the venue are not established yet."""
FILL_LOOKBACK_MS: Final = 60_000
"""Fills are fetched from this long before the last journalled one (or the order's creation): clock skew."""


def client_order_id(session: str, strategy: str, symbol: str, bar_ms: int, seq: int) -> str:
    """The deterministic client order id of the ``seq``-th order of ``strategy`` in ``symbol`` on the bar that
    opens at ``bar_ms`` in ``session`` (see the module docstring)."""
    # JSON keeps the parts apart whatever characters they hold
    raw = json.dumps([str(session), str(strategy), str(symbol), int(bar_ms), int(seq)], ensure_ascii=False)
    digest = base64.b32encode(hashlib.blake2b(raw.encode(), digest_size=15).digest()).decode().lower()
    prefix = _PREFIX_BAD.sub("_", str(strategy))[:10] or "o"
    cid = f"{prefix}.{digest}"
    assert CLIENT_ID_RE.match(cid), cid
    return cid


def manual_order_id(session: str, symbol: str, command_seq: int) -> str:
    """The client id of a manual order sent by the journal command with sequence number ``command_seq``."""
    return client_order_id(session, "manual", symbol, 0, command_seq)


@dataclass
class RecoveryReport:
    checked: int = 0
    """Open orders queried at the venue."""
    changed: list[str] = field(default_factory=list)
    """Client ids whose state changed on the venue's answer."""
    abandoned: list[str] = field(default_factory=list)
    """INITIALIZED orders (never sent) marked DENIED."""
    fills_recovered: int = 0
    """Fills found at the venue that the journal did not have."""
    external: list[Order] = field(default_factory=list)
    """Open orders at the venue that this session did not place (left alone)."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Unreachable(Exception):
    pass


class OrderManager:
    """The orders of one session against one broker (see the module docstring).

    ``clock_ms`` and ``sleep`` are injectable (tests drive a virtual clock); ``fill_listener`` is called with every
    new fill once it is journalled (the engine applies it to the portfolio).
    """

    def __init__(
        self,
        journal: Journal,
        broker: Broker,
        session: str,
        *,
        outcome_window_s: float = 15.0,
        resolve_attempts: int = 8,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 5.0,
        order_timeout_s: float | None = None,
        fill_listener: Callable[[Fill], None] | None = None,
        clock_ms: Callable[[], int] = now_ms,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.broker = broker
        self.session = session
        self.outcome_window_ms = int(outcome_window_s * 1000)
        self.resolve_attempts = max(1, resolve_attempts)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.order_timeout_ms = None if order_timeout_s is None else int(order_timeout_s * 1000)
        self.fill_listener = fill_listener
        self._clock = clock_ms
        self._sleep = sleep
        self._mono = monotonic
        self._sent_mono: dict[str, float] = {}
        self.orders: dict[str, Order] = {}
        self._open: dict[str, None] = {}  # client ids of the open orders, in the order they opened
        self._by_exchange_id: dict[str, str] = {}
        self._fill_keys: set[str] = set()
        self._external_fills: set[str] = set()
        self.fills_recorded = 0
        """New fills journalled by this manager."""
        self.unresolved: set[str] = set()
        """Orders whose state at the venue could not be established (yet)."""
        self.problems: list[str] = []

    # --------------------------------------------------------------------------------------- bookkeeping

    def _keep(self, order: Order) -> None:
        """``order`` as the current state of its id, in memory (the open ones indexed: see open_orders)."""
        cid = order.client_order_id
        self.orders[cid] = order
        if order.status.is_open:
            self._open[cid] = None
        else:
            self._open.pop(cid, None)

    def _set(self, order: Order) -> Order:
        self.journal.record_order(order)
        self._keep(order)
        if order.exchange_order_id:
            self._by_exchange_id[order.exchange_order_id] = order.client_order_id
        return order

    def _unresolve(self, cid: str) -> None:
        """Remember (in the journal's meta, so that a restart knows too) that ``cid`` needs another look."""
        if cid not in self.unresolved:
            self.unresolved.add(cid)
            self.journal.meta_set(UNRESOLVED_META, sorted(self.unresolved))

    def _resolved(self, cid: str) -> None:
        if cid in self.unresolved:
            self.unresolved.discard(cid)
            self.journal.meta_set(UNRESOLVED_META, sorted(self.unresolved))

    def _problem(self, message: str) -> None:
        log.warning(message)
        self.problems.append(message)
        self.journal.log("error", message)

    def get(self, client_order_id: str) -> Order | None:
        return self.orders.get(client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders working or possibly working at the venue (SUBMITTED counts: its outcome is not known)."""
        # the index of open ids, not a scan of every order the session ever sent (the risk view wants the open
        # orders before every order and after every fill)
        orders = (self.orders[c] for c in self._open)
        return [o for o in orders if o.status.is_open and (symbol is None or o.symbol == symbol)]

    def _cur(self, order: Order | str) -> Order:
        cid = order if isinstance(order, str) else order.client_order_id
        try:
            return self.orders[cid]
        except KeyError:
            raise KeyError(f"order {cid!r} is not an order of session {self.session!r}") from None

    # ------------------------------------------------------------------------------------------ submit

    def deny(self, order: Order, reason: str) -> Order:
        """Journal ``order`` as refused before sending (risk, market rules); it is never sent. An id already
        past INITIALIZED (sent in an earlier life of the session) is left as it is and returned."""
        cur = self.orders.get(order.client_order_id)
        if cur is not None and cur.status is not _S.INITIALIZED:
            log.info("order %s is already %s: not denied", order.client_order_id, cur.status.value)
            return cur
        now = self._clock()
        if cur is None:
            cur = self._set(replace(order, created_ms=order.created_ms or now, updated_ms=now))
        return self._set(cur.with_status(_S.DENIED, ts_ms=now, reason=reason))

    async def submit(self, order: Order) -> Order:
        """Send ``order`` (INITIALIZED) once; returns its state after the venue's answer (see the module doc)."""
        cid = order.client_order_id
        if not CLIENT_ID_RE.match(cid):
            raise ValueError(
                f"client order id {cid!r} breaks the venue's rule: 1-36 characters of [.A-Z:/a-z0-9_-]"
            )
        known = self.orders.get(cid)
        if known is not None and known.status is not _S.INITIALIZED:
            log.info("order %s is already %s: not sent again", cid, known.status.value)
            return known
        if order.status is not _S.INITIALIZED:
            raise OrderStateError(
                f"order {cid}: only an INITIALIZED order is submitted, not {order.status.value}"
            )
        now = self._clock()
        if known is None:
            order = self._set(replace(order, created_ms=order.created_ms or now, updated_ms=now))
        else:
            order = known
        try:
            self.broker.market(order.symbol).check(order.amount, order.price)
        except MarketRuleError as e:
            return self.deny(order, str(e))
        except KeyError:
            return self.deny(order, f"{order.symbol}: no such market at {self.broker.name}")
        order = self._set(order.with_status(_S.SUBMITTED, ts_ms=self._clock()))
        self._sent_mono[cid] = self._mono()
        try:
            venue = await self.broker.submit(order)
        except DuplicateOrder as e:
            log.warning("order %s: the venue says it is a duplicate (%s): querying it", cid, e.reason)
            return await self._resolve(cid)
        except OrderRejected as e:
            return self._set(self.orders[cid].with_status(_S.REJECTED, ts_ms=self._clock(), reason=e.reason))
        except BrokerUnavailable as e:
            log.warning("order %s: broker unavailable (%s): checking it was not placed", cid, e)
            return await self._resolve(cid, not_sent=True)
        except Exception as e:  # UnknownOutcome, or anything else: the POST may have reached the venue
            log.warning("order %s: outcome unknown (%s: %s): querying the venue", cid, type(e).__name__, e)
            return await self._resolve(cid)
        return await self._apply_venue(cid, venue)

    async def _query(self, order: Order) -> Order | None:
        """The venue's view of ``order``, retried with backoff; raises :class:`_Unreachable`."""
        delay = self.backoff_initial_s
        last: Exception | None = None
        for attempt in range(self.resolve_attempts):
            try:
                return await self.broker.fetch_order(order)
            except (BrokerError, OSError, TimeoutError) as e:
                last = e
            if attempt + 1 < self.resolve_attempts:
                await self._sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
        raise _Unreachable(f"order {order.client_order_id}: the venue could not be asked ({last})")

    async def _resolve(self, cid: str, not_sent: bool = False) -> Order:
        """Establish a SUBMITTED order's state at the venue by its client id (never by resending)."""
        delay = self.backoff_initial_s
        for attempt in range(self.resolve_attempts):
            cur = self.orders[cid]
            if cur.status is not _S.SUBMITTED:  # an update or a fill answered meanwhile
                self._resolved(cid)
                return cur
            try:
                venue = await self.broker.fetch_order(cur)
            except (BrokerError, OSError, TimeoutError) as e:
                log.info("order %s: query failed (%s), retrying", cid, e)
            else:
                if venue is not None:
                    self._resolved(cid)
                    return await self._apply_venue(cid, venue)
                if not_sent or self._window_passed(cur):
                    self._resolved(cid)
                    return self._set(
                        cur.with_status(_S.REJECTED, ts_ms=self._clock(), reason="not found at the venue")
                    )
            if attempt + 1 < self.resolve_attempts:
                await self._sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
        self._unresolve(cid)
        self.journal.log(
            "warning", f"order {cid}: outcome still unknown after {self.resolve_attempts} queries"
        )
        return self.orders[cid]

    def _window_passed(self, cur: Order) -> bool:
        """Whether the outcome window since ``cur`` was SUBMITTED has passed, on the session's clock or, for an
        order sent by this process, on the monotonic wall clock (a replay clock may stand still while the
        request's time in flight, which the window bounds, runs on)."""
        if self._clock() - cur.updated_ms >= self.outcome_window_ms:
            return True
        sent = self._sent_mono.get(cur.client_order_id)
        return sent is not None and (self._mono() - sent) * 1000 >= self.outcome_window_ms

    async def resolve_pending(self) -> list[Order]:
        """Try again to establish the orders whose outcome is unknown (call on a timer)."""
        out = []
        for cid in sorted(self.unresolved):
            cur = self.orders[cid]
            if cur.status is _S.SUBMITTED:
                out.append(await self._resolve(cid))
            else:
                try:
                    venue = await self._query(cur)
                except _Unreachable:
                    out.append(cur)
                    continue
                self._resolved(cid)
                out.append(cur if venue is None else await self._apply_venue(cid, venue))
        return out

    # ------------------------------------------------------------------------------- venue updates, fills

    def _transition(self, cur: Order, status: OrderStatus, **changes: object) -> Order:
        if status == cur.status:
            return replace(cur, **changes) if changes else cur  # type: ignore[arg-type]
        if status not in ORDER_TRANSITIONS[cur.status]:
            log.info(
                "order %s: venue says %s while %s: ignored",
                cur.client_order_id,
                status.value,
                cur.status.value,
            )
            return cur
        return cur.with_status(status, ts_ms=self._clock(), **changes)

    async def _apply_venue(self, cid: str, venue: Order, cancel_answer: bool = False) -> Order:
        """Merge the venue's view of order ``cid``: exchange id and status; the filled amount from fills."""
        cur = self.orders[cid]
        dirty = False
        if venue.exchange_order_id and cur.exchange_order_id != venue.exchange_order_id:
            cur = replace(cur, exchange_order_id=venue.exchange_order_id)
            self._by_exchange_id[venue.exchange_order_id] = cid
            self._keep(cur)
            dirty = True
        if venue.filled > cur.filled + _EPS * max(cur.amount, 1.0):
            before = cur
            try:
                await self._fetch_fills(cur.symbol, since_ms=cur.created_ms - FILL_LOOKBACK_MS)
            except (BrokerError, OSError, TimeoutError) as e:
                log.info("order %s: fills could not be fetched (%s)", cid, e)
            cur = self.orders[cid]
            if cur is not before:
                dirty = False  # journalled with its fill, the exchange id included: not a second time
            if venue.filled > cur.filled + _EPS * max(cur.amount, 1.0):
                self._unresolve(cid)  # resolve_pending / recover fetch them again
                self.journal.log(
                    "warning",
                    f"order {cid}: the venue reports {venue.filled} filled, fills seen for {cur.filled}",
                )
        new = cur
        st = venue.status
        if st in (_S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED):
            # the order is (or was) working at the venue; its fill status comes from the fills
            if cur.status is _S.SUBMITTED:
                new = self._transition(cur, _S.ACCEPTED)
            elif cancel_answer and cur.status is _S.PENDING_CANCEL and st is not _S.FILLED:
                new = self._transition(
                    cur, _S.PARTIALLY_FILLED if cur.filled > 0 else _S.ACCEPTED, reason=None
                )
        elif st in (_S.CANCELED, _S.EXPIRED, _S.REJECTED):
            new = self._transition(cur, st, reason=venue.reason or cur.reason)
        if new is not cur or dirty:
            self._set(new)
        return self.orders[cid]

    async def on_order_update(self, venue: Order) -> Order | None:
        """An order update from the venue (websocket executionReport, a poll); ``None`` if not ours."""
        cid = venue.client_order_id if venue.client_order_id in self.orders else None
        if cid is None and venue.exchange_order_id:
            cid = self._by_exchange_id.get(venue.exchange_order_id)
        if cid is None:
            log.info("order update for %s (not ours): ignored", venue.client_order_id)
            return None
        return await self._apply_venue(cid, venue)

    def _own(self, fill: Fill) -> Fill | None:
        cid = fill.client_order_id if fill.client_order_id in self.orders else None
        if cid is None and fill.exchange_order_id:
            cid = self._by_exchange_id.get(fill.exchange_order_id)
        if cid is None:
            return None
        order = self.orders[cid]
        if fill.client_order_id != cid or fill.tag != order.tag:
            fill = replace(fill, client_order_id=cid, tag=order.tag)
        return fill

    def on_fill(self, fill: Fill) -> bool:
        """Record a fill once; ``True`` when it was new (journalled with the order after it)."""
        key = fill_key(fill)
        if key in self._fill_keys:
            return False
        own = self._own(fill)
        if own is None:
            if key not in self._external_fills:
                self._external_fills.add(key)
                self.journal.log(
                    "info",
                    f"fill {key} of order {fill.client_order_id or fill.exchange_order_id} "
                    "is not this session's: ignored",
                )
            return False
        cur = self.orders[own.client_order_id]
        problem = None
        try:
            after: Order | None = cur.with_fill(own)
        except (OrderStateError, ValueError) as e:
            after, problem = None, str(e)
        if not self.journal.record_fill(own, after):
            self._fill_keys.add(key)
            return False
        self._fill_keys.add(key)
        self.fills_recorded += 1
        if after is not None:
            self._keep(after)
        else:
            self._problem(f"fill {key} recorded, but order {cur.client_order_id} cannot take it: {problem}")
        if self.fill_listener is not None:
            self.fill_listener(own)
        return True

    async def _fetch_fills(self, symbol: str, since_ms: int | None) -> int:
        fills = await self.broker.fetch_fills(symbol, since_ms)
        return sum(self.on_fill(f) for f in sorted(fills, key=lambda f: (f.timestamp, f.trade_id)))

    # ------------------------------------------------------------------------------------------- cancel

    async def cancel(self, order: Order | str, reason: str = "canceled") -> Order:
        """Cancel one order (see the module docstring); returns its state after the venue's answer."""
        cur = self._cur(order)
        cid = cur.client_order_id
        if cur.status is _S.INITIALIZED:
            return self.deny(cur, f"{reason} before it was sent")
        if cur.status is _S.SUBMITTED:
            cur = await self._resolve(cid)
        if not cur.status.is_open or cur.status is _S.SUBMITTED:
            return cur
        cur = self._set(cur.with_status(_S.PENDING_CANCEL, ts_ms=self._clock(), reason=reason))
        try:
            venue: Order | None = await self.broker.cancel(cur)
        except Exception as e:  # refused (unknown / no longer open), unknown outcome, unavailable: ask
            log.info("cancel of %s: %s: %s; querying the order", cid, type(e).__name__, e)
            try:
                venue = await self._query(cur)
            except _Unreachable as u:
                self._unresolve(cid)
                self.journal.log("warning", f"cancel of {cid}: {u}")
                return self.orders[cid]
            if venue is None:
                self._unresolve(cid)
                self._problem(f"cancel of {cid}: the venue does not know the order ({e})")
                return self.orders[cid]
        assert venue is not None
        return await self._apply_venue(cid, venue, cancel_answer=True)

    async def cancel_all(self, symbol: str | None = None, reason: str = "cancel all") -> list[Order]:
        return [await self.cancel(o, reason) for o in self.open_orders(symbol)]

    async def replace(
        self,
        order: Order | str,
        new_client_order_id: str,
        *,
        price: float | None = None,
        amount: float | None = None,
    ) -> Order | None:
        """Cancel ``order`` and, once the cancel is confirmed, send its replacement (the remaining amount unless
        ``amount`` is given, at ``price`` or the old price). ``None`` when nothing is left to replace (it filled)
        or the cancel is not confirmed (never two working orders for one intent)."""
        old = await self.cancel(order, reason=f"replaced by {new_client_order_id}")
        if old.status not in (_S.CANCELED, _S.EXPIRED):
            return None
        amt = old.remaining if amount is None else amount
        if not amt > _EPS * old.amount:
            return None
        new = Order(
            client_order_id=new_client_order_id,
            symbol=old.symbol,
            side=old.side,
            type=old.type,
            amount=amt,
            price=old.price if price is None else price,
            time_in_force=old.time_in_force,
            tag=old.tag,
            reduce_only=old.reduce_only,
        )
        return await self.submit(new)

    async def expire_stale(self, now: int | None = None) -> list[Order]:
        """Cancel working limit orders older than ``order_timeout_s`` (none when it is ``None``)."""
        if self.order_timeout_ms is None:
            return []
        now = self._clock() if now is None else now
        stale = [
            o
            for o in self.open_orders()
            if o.type is OrderType.LIMIT
            and o.status in (_S.ACCEPTED, _S.PARTIALLY_FILLED)
            and now - o.created_ms >= self.order_timeout_ms
        ]
        return [await self.cancel(o, f"timeout after {self.order_timeout_ms / 1000:g} s") for o in stale]

    # ----------------------------------------------------------------------------------------- recover

    async def recover(self) -> RecoveryReport:
        """Reload from the journal and reconcile with the venue (see the module docstring)."""
        rep = RecoveryReport()
        fills_before = self.fills_recorded
        self.orders = self.journal.orders()
        self._open = {c: None for c, o in self.orders.items() if o.status.is_open}
        self._by_exchange_id = {o.exchange_order_id: c for c, o in self.orders.items() if o.exchange_order_id}
        fills = self.journal.fills()
        self._fill_keys = {fill_key(f) for f in fills}
        for cid, o in list(self.orders.items()):
            if o.status is _S.INITIALIZED:
                self.deny(o, "never sent (the session stopped before sending it)")
                rep.abandoned.append(cid)
        self.unresolved = {c for c in self.journal.meta_get(UNRESOLVED_META, []) if c in self.orders}
        for cid, o in list(self.orders.items()):
            if not o.status.is_open and cid not in self.unresolved:
                continue
            rep.checked += 1
            before = o
            if o.status is _S.SUBMITTED:
                after = await self._resolve(cid)
                if after.status is _S.SUBMITTED:
                    rep.problems.append(f"order {cid}: outcome unknown (the venue could not tell)")
            else:
                try:
                    venue = await self._query(o)
                except _Unreachable as e:
                    rep.problems.append(str(e))
                    self._unresolve(cid)
                    continue
                if venue is None:
                    rep.problems.append(
                        f"order {cid} ({o.status.value} in the journal) is unknown at the venue"
                    )
                    self._unresolve(cid)
                    continue
                self._resolved(
                    cid
                )  # set again by _apply_venue if the venue still tells more than the journal
                after = await self._apply_venue(cid, venue)
            if after != before:
                rep.changed.append(cid)
        last = self.journal.last_fill_ts()
        symbols = sorted({o.symbol for o in self.orders.values() if o.status is not _S.DENIED})
        for sym in symbols:
            created = [o.created_ms for o in self.orders.values() if o.symbol == sym]
            since = (last if last is not None else min(created)) - FILL_LOOKBACK_MS
            try:
                await self._fetch_fills(sym, since)
            except (BrokerError, OSError, TimeoutError) as e:
                rep.problems.append(f"{sym}: fills since {since} could not be fetched ({e})")
        try:
            rep.external = [
                o for o in await self.broker.fetch_open_orders() if o.client_order_id not in self.orders
            ]
        except (BrokerError, OSError, TimeoutError) as e:
            rep.problems.append(f"open orders could not be fetched ({e})")
        rep.fills_recovered = self.fills_recorded - fills_before
        for o in rep.external:
            self.journal.log(
                "info",
                f"external open order {o.client_order_id} ({o.side.value} {o.amount} {o.symbol}): left alone",
            )
        return rep
