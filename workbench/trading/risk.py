"""The risk manager: pre-trade checks on every order, checks on every fill, and the kill switch on every
mark-to-market, across all strategies and manual orders of one account.

Pure and synchronous: no I/O, no clock, no exchange client. The engine calls it, journals what it returns
(:class:`RiskEvent`, refusals through :meth:`RiskDecision.event`) and persists :meth:`RiskManager.to_dict`
in its journal, so that a HALT survives a restart until a person clears it.

States (after nautilus_trader's trading states)
    ``ACTIVE``    every order that keeps within the limits passes.
    ``REDUCING``  only orders that reduce a position pass. Entered by a person (:meth:`RiskManager.reduce`,
                  left by :meth:`~RiskManager.resume`) or by a stale feed (no price update for
                  ``stale_feed_s``, seen by :meth:`~RiskManager.on_timer`; left by itself when updates resume).
    ``HALTED``    the kill switch. Only flattening orders pass (``reduce_only`` and reducing); the engine
                  cancels every open order and, with ``flatten_on_halt``, closes the positions
                  (:attr:`RiskManager.should_flatten`). Entered by a breach of ``max_drawdown`` or
                  ``daily_loss_limit`` at the mark that breaches it (not one event later), by a mark with an
                  equity that is not a finite positive number, or by :meth:`~RiskManager.halt`. Only
                  :meth:`~RiskManager.clear_halt` (``workbench trade resume --clear-halt``) leaves it:
                  :meth:`~RiskManager.resume` refuses, and a restart restores it.
    The state is derived from three flags: halted > reducing (by a person, or a stale feed) > active.

Definitions the checks use (``view`` is the engine's :class:`RiskView` at the moment of the check)
    position      ``view.positions[symbol]``: signed base amount, total over strategies and manual orders.
    open orders   the orders of ``view.open_orders`` whose status is open (SUBMITTED, ACCEPTED,
                  PARTIALLY_FILLED, PENDING_CANCEL), other than the order being checked; their ``remaining``.
    reducing      the position is not flat, the order is on the opposite side, and the order's amount plus
                  the remaining amounts of the open orders on the same side and symbol is at most |position|
                  (so several working orders cannot together flip the position).
    flattening    reducing and ``order.reduce_only`` (the engine's flatten, ``trade close``).
    reference     the price an order is valued at: the last price for a market order, max(limit price, last
                  price) for a limit order (a marketable limit fills near the last price, a resting one at its
                  limit: the larger is the worst case).
    exposure      per symbol, the worst case over the open orders: max(|pos + open buys|, |pos - open sells|)
                  × last price, with the order being checked counted in its side.

Checks of :meth:`RiskManager.check`, in this order; the first that fails is the decision's ``limit``:
    ``state``                 HALTED: only flattening orders; REDUCING: only reducing orders.
    ``reduce_only``           an order marked reduce_only must be reducing.
    ``price``                 the order's symbol needs a finite positive last price (else nothing can be valued).
    ``min_amount``, ``max_amount``, ``max_order_notional``, ``price_band`` (limit orders: |price/last - 1|):
                              per order, every order (a large flatten is split by the engine).
    ``max_open_orders``, ``max_orders_per_minute`` (``view.recent_order_ms`` in the 60 s before
                              ``view.now_ms``): every order except flattening orders in HALTED (the kill switch
                              does not wait).
    and for orders that are not reducing only:
    ``stale_feed_s``          the symbol's feed (watched, and updated by :meth:`~RiskManager.on_mark`) is older than
                              the limit at ``view.now_ms`` (even before the next timer moves the state).
    ``equity``                ``view.equity`` must be a finite positive number.
    ``max_position_fraction`` exposure of the symbol / equity.
    ``max_gross_exposure``    sum of the exposures / equity (every symbol with a position or open order needs a
                              last price, else ``price``).
A limit is broken when the value is strictly above it (equal passes); ``min_amount`` when strictly below.
Per-symbol overrides (``risk.symbols``) replace the account-wide per-order limits for their symbol.

Kill switch (:meth:`RiskManager.on_mark`, on every price event)
    peak          the highest equity marked so far (kept across restarts): drawdown = (peak - equity) / peak.
    day           the UTC day of the mark's time. The day's starting equity is the last equity marked before
                  the day began (the first mark's equity on the first day): a loss that straddles midnight
                  counts for the new day. daily loss = (start - equity) / start.
    Either above its limit halts at that mark. :meth:`~RiskManager.clear_halt` accepts the losses so far: the
    peak and the day's starting equity restart from the last marked equity (else the next mark would halt
    again).

On a fill (:meth:`RiskManager.on_fill`) the position and the gross exposure after the fill (positions only) are
checked; a breach (possible through a price move or orders approved earlier) is returned as a ``breach`` event
and does not change the state: orders that would increase the exposure are refused anyway while it lasts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from workbench.config import RiskConfig
from workbench.types import Fill, Order, OrderType, Side

__all__ = [
    "STATE_VERSION",
    "RiskDecision",
    "RiskEvent",
    "RiskLimits",
    "RiskManager",
    "RiskState",
    "RiskStateError",
    "RiskView",
]

RiskLimits = RiskConfig
"""The limits: ``trading.risk`` in ``config/trading.yml`` (typed, validated, frozen; see
:class:`workbench.config.RiskConfig`). Build one directly with ``RiskLimits(max_drawdown=0.1, ...)``."""

STATE_VERSION: Final = 1
DAY_MS: Final = 86_400_000
MINUTE_MS: Final = 60_000
_REDUCE_TOL: Final = 1e-9  # relative slack of "reduces the position" (float sums of partial fills)
_ACCOUNT_FEED: Final = "*"


class RiskState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class RiskStateError(ValueError):
    """A state change that is not allowed (``resume`` while HALTED), or a persisted state that cannot be read."""


@dataclass(frozen=True, slots=True)
class RiskView:
    """What the engine knows at the moment of a check, across all strategies and manual orders.

    ``positions``: signed base amount per symbol (total over tags); ``prices``: last price per symbol;
    ``equity``: account equity in the quote currency; ``open_orders``: the working orders (others are ignored);
    ``recent_order_ms``: the submit times of recent orders (for ``max_orders_per_minute``); ``now_ms``: the
    engine's clock (the replay clock in a replay session).
    """

    now_ms: int
    equity: float
    positions: Mapping[str, float] = field(default_factory=dict)
    prices: Mapping[str, float] = field(default_factory=dict)
    open_orders: Sequence[Order] = ()
    recent_order_ms: Sequence[int] = ()


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """Something to journal (``journal.record_risk(e.ts_ms, e.event, e.reason, **e.extra())``).

    ``event``: ``halt``, ``reduce``, ``resume`` (state changes: ``previous`` is set), ``refused`` (an order the
    checks refused), ``breach`` (a limit found broken after a fill), ``stale_feed`` / ``feed_resumed`` (a feed
    went stale or resumed without changing the state: another feed keeps it REDUCING, or it is HALTED). ``limit`` names the limit concerned
    (``None`` for a person's command); ``state`` is the state after the event.
    """

    ts_ms: int
    event: str
    reason: str
    state: RiskState
    limit: str | None = None
    previous: RiskState | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_state_change(self) -> bool:
        return self.previous is not None and self.previous != self.state

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state.value, "limit": self.limit}
        if self.previous is not None:
            out["previous"] = self.previous.value
        out.update(self.data)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts_ms, "event": self.event, "reason": self.reason, **self.extra()}


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The answer to one order: ``ok``, else ``reason`` (names the limit and the numbers) and ``limit``."""

    ok: bool
    reason: str = ""
    limit: str | None = None

    def __bool__(self) -> bool:
        return self.ok

    def event(self, order: Order, ts_ms: int, state: RiskState) -> RiskEvent:
        """The ``refused`` event to journal for this refusal of ``order``."""
        if self.ok:
            raise ValueError(f"order {order.client_order_id} was approved: nothing to journal as refused")
        return RiskEvent(
            ts_ms,
            "refused",
            self.reason,
            state,
            self.limit,
            data={
                "client_order_id": order.client_order_id,
                "symbol": order.symbol,
                "side": order.side.value,
                "amount": order.amount,
                "price": order.price,
                "tag": order.tag,
            },
        )


APPROVED: Final = RiskDecision(True)


def _n(x: float) -> str:
    """A number for a message: enough digits to see why it broke the limit."""
    return f"{x:.8g}"


def _quote(symbol: str) -> str:
    return symbol.partition("/")[2].split(":", 1)[0] or "quote"


def _good_price(p: object) -> bool:
    return isinstance(p, int | float) and math.isfinite(p) and p > 0


class RiskManager:
    """The account's risk manager (see the module docstring for the rules).

    ``RiskManager(limits, state=RiskState.ACTIVE)``; restore a persisted one with
    :meth:`from_dict`. Not thread-safe: the engine's event loop owns it.
    """

    def __init__(
        self, limits: RiskLimits, state: RiskState | str = RiskState.ACTIVE, *, reason: str = "restored"
    ) -> None:
        if not isinstance(limits, RiskConfig):
            raise TypeError(f"limits must be a RiskLimits (trading.risk), got {type(limits).__name__}")
        self.limits = limits
        state = RiskState(state)
        self._halted = state is RiskState.HALTED
        self._halt_reason: str | None = reason if self._halted else None
        self._manual_reduce = state is RiskState.REDUCING
        self._reduce_reason: str | None = reason if self._manual_reduce else None
        self._stale: set[str] = set()
        self._feeds: dict[str, int] = {}
        self._peak: float | None = None
        self._day: int | None = None
        self._day_start: float | None = None
        self._last_equity: float | None = None
        self._last_ms: int = 0
        self._since_ms: int = 0
        self._dd_limit = limits.max_drawdown
        self._daily_limit = limits.daily_loss_limit
        self._stale_ms = None if limits.stale_feed_s is None else limits.stale_feed_s * 1000.0

    # ------------------------------------------------------------------------------------------- state

    @property
    def state(self) -> RiskState:
        if self._halted:
            return RiskState.HALTED
        if self._manual_reduce or self._stale:
            return RiskState.REDUCING
        return RiskState.ACTIVE

    @property
    def state_reason(self) -> str | None:
        """Why the state is what it is (``None`` when ACTIVE)."""
        if self._halted:
            return self._halt_reason
        if self._manual_reduce:
            return self._reduce_reason
        if self._stale:
            return f"stale feed: {', '.join(sorted(self._stale))}"
        return None

    @property
    def should_flatten(self) -> bool:
        """HALTED with ``flatten_on_halt``: the engine closes the positions (with reduce_only orders)."""
        return self._halted and self.limits.flatten_on_halt

    @property
    def peak_equity(self) -> float | None:
        return self._peak

    @property
    def day_start_equity(self) -> float | None:
        return self._day_start

    @property
    def last_equity(self) -> float | None:
        return self._last_equity

    @property
    def since_ms(self) -> int:
        """When the state last changed (0: not since this manager was created or restored)."""
        return self._since_ms

    @property
    def stale_feeds(self) -> frozenset[str]:
        return frozenset(self._stale)

    @property
    def drawdown(self) -> float:
        """The current fall below the peak, a fraction of the peak (0 before the first mark)."""
        if not self._peak or self._last_equity is None:
            return 0.0
        return (self._peak - self._last_equity) / self._peak

    @property
    def daily_loss(self) -> float:
        if not self._day_start or self._last_equity is None:
            return 0.0
        return (self._day_start - self._last_equity) / self._day_start

    def _change(
        self, before: RiskState, ts_ms: int, reason: str, limit: str | None, **data: Any
    ) -> list[RiskEvent]:
        after = self.state
        if after == before:
            return []
        self._since_ms = ts_ms
        event = {RiskState.HALTED: "halt", RiskState.REDUCING: "reduce", RiskState.ACTIVE: "resume"}[after]
        return [RiskEvent(ts_ms, event, reason, after, limit, previous=before, data=data)]

    def _ts(self, ts_ms: int | None) -> int:
        return self._last_ms if ts_ms is None else int(ts_ms)

    def halt(
        self, reason: str, *, ts_ms: int | None = None, limit: str | None = None, **data: Any
    ) -> list[RiskEvent]:
        """Move to HALTED (the kill switch). Already HALTED: nothing changes (the first reason is kept)."""
        before = self.state
        if self._halted:
            return []
        self._halted = True
        self._halt_reason = reason
        return self._change(before, self._ts(ts_ms), reason, limit, **data)

    def reduce(self, reason: str, *, ts_ms: int | None = None) -> list[RiskEvent]:
        """Only reducing orders from now on, until :meth:`resume`. While HALTED, noted for after the halt."""
        before = self.state
        self._manual_reduce = True
        self._reduce_reason = reason
        return self._change(before, self._ts(ts_ms), reason, None)

    def resume(self, reason: str = "resumed by a person", *, ts_ms: int | None = None) -> list[RiskEvent]:
        """Leave a REDUCING set by :meth:`reduce` (a stale feed leaves by itself when prices resume).

        Raises :class:`RiskStateError` while HALTED: only :meth:`clear_halt` leaves a halt."""
        if self._halted:
            raise RiskStateError(
                f"the risk state is HALTED ({self._halt_reason}): only clearing the halt leaves it "
                "(workbench trade resume --clear-halt)"
            )
        before = self.state
        self._manual_reduce = False
        self._reduce_reason = None
        return self._change(before, self._ts(ts_ms), reason, None)  # still REDUCING while a feed is stale

    def clear_halt(
        self, reason: str = "halt cleared by a person", *, ts_ms: int | None = None
    ) -> list[RiskEvent]:
        """Leave HALTED (and a person's REDUCING): ACTIVE, or REDUCING while a feed is stale. The losses so far
        are accepted: the peak and the day's starting equity restart from the last marked equity. Not HALTED:
        nothing changes."""
        if not self._halted:
            return []
        before = self.state
        self._halted = False
        self._halt_reason = None
        self._manual_reduce = False
        self._reduce_reason = None
        if self._last_equity is not None:
            self._peak = self._last_equity
            self._day_start = self._last_equity
        return self._change(before, self._ts(ts_ms), reason, None)

    # ----------------------------------------------------------------------------------------- events

    def watch_feed(self, symbol: str, since_ms: int) -> None:
        """Expect price updates for ``symbol`` from ``since_ms`` on (a feed that never updates goes stale too)."""
        self._feeds.setdefault(symbol, int(since_ms))

    def on_mark(self, ts_ms: int, equity: float, symbol: str | None = None) -> list[RiskEvent]:
        """A mark-to-market on a price event (of ``symbol``, when given; it counts as a feed update).

        Returns the events: HALTED at this mark when the drawdown from the peak or the day's loss breaks its
        limit, or when ``equity`` is not a finite number; ACTIVE again when this update ends a stale feed."""
        ts_ms = int(ts_ms)
        before = self.state
        if ts_ms > self._last_ms:
            self._last_ms = ts_ms
        events: list[RiskEvent] = []
        key = _ACCOUNT_FEED if symbol is None else symbol
        last_feed = self._feeds.get(key)
        if last_feed is None or ts_ms > last_feed:
            self._feeds[key] = ts_ms
        if self._stale and key in self._stale:
            self._stale.discard(key)
            why = f"feed resumed: {key} updated"
            events += self._change(before, ts_ms, why, "stale_feed_s", symbol=key) or [
                RiskEvent(ts_ms, "feed_resumed", why, before, "stale_feed_s", data={"symbol": key})
            ]
            before = self.state
        if not (isinstance(equity, int | float) and math.isfinite(equity)):
            return events + self.halt(
                f"equity is not a finite number ({equity!r}): cannot value the account",
                ts_ms=ts_ms,
                limit="equity",
            )
        equity = float(equity)
        if equity <= 0:
            return events + self.halt(
                f"equity: {_n(equity)} is not positive", ts_ms=ts_ms, limit="equity", equity=equity
            )
        day = ts_ms // DAY_MS
        if self._day is None:
            self._day, self._day_start = day, equity
        elif day > self._day:
            self._day = day
            self._day_start = self._last_equity if self._last_equity is not None else equity
        self._last_equity = equity
        if self._peak is None or equity > self._peak:
            self._peak = equity
        if self._halted:
            return events
        peak = self._peak
        dd = (peak - equity) / peak  # peak >= equity > 0
        if dd > self._dd_limit:
            return events + self.halt(
                f"max_drawdown: equity {_n(equity)} is {dd:.4%} below the peak {_n(peak)} "
                f"> limit {self._dd_limit:.4%}",
                ts_ms=ts_ms,
                limit="max_drawdown",
                equity=equity,
                peak=peak,
                drawdown=dd,
            )
        start = self._day_start
        if start is not None and start > 0:
            loss = (start - equity) / start
            if loss > self._daily_limit:
                return events + self.halt(
                    f"daily_loss_limit: equity {_n(equity)} is {loss:.4%} below the UTC day's starting "
                    f"equity {_n(start)} > limit {self._daily_limit:.4%}",
                    ts_ms=ts_ms,
                    limit="daily_loss_limit",
                    equity=equity,
                    day_start_equity=start,
                    daily_loss=loss,
                )
        return events

    def on_timer(self, now_ms: int) -> list[RiskEvent]:
        """Check the feeds: one with no update for more than ``stale_feed_s`` moves the state to REDUCING."""
        now_ms = int(now_ms)
        if now_ms > self._last_ms:
            self._last_ms = now_ms
        if self._stale_ms is None:
            return []
        events: list[RiskEvent] = []
        for key, last in sorted(self._feeds.items()):
            if key not in self._stale and now_ms - last > self._stale_ms:
                before = self.state
                self._stale.add(key)
                age = (now_ms - last) / 1000.0
                why = (
                    f"stale_feed_s: no price update for {key} for {age:g} s "
                    f"> limit {self.limits.stale_feed_s:g} s"
                )
                data = {"symbol": key, "age_s": age}
                events += self._change(before, now_ms, why, "stale_feed_s", **data) or [
                    RiskEvent(now_ms, "stale_feed", why, before, "stale_feed_s", data=data)
                ]
        return events

    def on_fill(self, fill: Fill, view: RiskView) -> list[RiskEvent]:
        """After ``fill`` (``view`` shows the positions with it applied): ``breach`` events for a position or a
        gross exposure above its limit. The state does not change."""
        events: list[RiskEvent] = []
        eq = view.equity
        if not (math.isfinite(eq) and eq > 0):
            return [
                RiskEvent(
                    fill.timestamp,
                    "breach",
                    f"equity: {eq!r} after fill {fill.trade_id} is not a positive number",
                    self.state,
                    "equity",
                    data={"trade_id": fill.trade_id},
                )
            ]
        gross = 0.0
        for sym, pos in view.positions.items():
            if not pos:
                continue
            px = view.prices.get(sym)
            if not _good_price(px):
                events.append(
                    RiskEvent(
                        fill.timestamp,
                        "breach",
                        f"price: no last price for {sym}: cannot value the position after fill {fill.trade_id}",
                        self.state,
                        "price",
                        data={"trade_id": fill.trade_id, "symbol": sym},
                    )
                )
                continue
            value = abs(pos) * px  # type: ignore[operator]
            gross += value
            if sym == fill.symbol:
                frac = self._limit(sym, "max_position_fraction")
                if value > frac * eq:
                    events.append(
                        RiskEvent(
                            fill.timestamp,
                            "breach",
                            f"max_position_fraction: {sym} position {_n(pos)} ≈ {_n(value)} {_quote(sym)} is "
                            f"{value / eq:.4f} of equity {_n(eq)} > limit {frac:g} (after fill {fill.trade_id})",
                            self.state,
                            "max_position_fraction",
                            data={"trade_id": fill.trade_id, "symbol": sym, "fraction": value / eq},
                        )
                    )
        lim = self.limits.max_gross_exposure
        if gross > lim * eq:
            events.append(
                RiskEvent(
                    fill.timestamp,
                    "breach",
                    f"max_gross_exposure: gross exposure {_n(gross)} is {gross / eq:.4f} of equity {_n(eq)} "
                    f"> limit {lim:g} (after fill {fill.trade_id})",
                    self.state,
                    "max_gross_exposure",
                    data={"trade_id": fill.trade_id, "exposure": gross / eq},
                )
            )
        return events

    # ------------------------------------------------------------------------------------- the checks

    def _limit(self, symbol: str, name: str) -> Any:
        o = self.limits.symbols.get(symbol)
        if o is not None:
            v = getattr(o, name)
            if v is not None:
                return v
        return getattr(self.limits, name)

    @staticmethod
    def _open_orders(order: Order, view: RiskView) -> list[Order]:
        return [
            o for o in view.open_orders if o.status.is_open and o.client_order_id != order.client_order_id
        ]

    def max_order_amount(self, symbol: str, last: float | None) -> float:
        """The largest amount of a market order in ``symbol`` that passes ``max_amount`` and
        ``max_order_notional`` at the last price ``last`` (``inf`` when neither applies; ``0.0`` when a
        notional limit is set and ``last`` is not a valid price). The engine splits a flatten with it."""
        cap = math.inf
        hi = self._limit(symbol, "max_amount")
        if hi is not None:
            cap = float(hi)
        max_notional = self._limit(symbol, "max_order_notional")
        if max_notional is not None:
            if not _good_price(last):
                return 0.0
            assert last is not None
            by_notional = max_notional / last
            while (
                by_notional > 0 and by_notional * last > max_notional
            ):  # (limit / last) x last: an ulp above
                by_notional = math.nextafter(by_notional, 0.0)
            cap = min(cap, by_notional)
        return cap

    def min_order_amount(self, symbol: str) -> float:
        """``min_amount`` for ``symbol`` (0.0 when unset)."""
        lo = self._limit(symbol, "min_amount")
        return 0.0 if lo is None else float(lo)

    def is_reducing(self, order: Order, view: RiskView) -> bool:
        """Whether ``order`` reduces its symbol's position, counting the open orders on the same side."""
        return _reduces(order, view.positions.get(order.symbol, 0.0), self._open_orders(order, view))

    def check(self, order: Order, view: RiskView) -> RiskDecision:
        """Approve or refuse ``order`` before it is sent. A refusal names the limit and the numbers."""
        sym = order.symbol
        open_orders = self._open_orders(order, view)
        pos = float(view.positions.get(sym, 0.0))
        reducing = _reduces(order, pos, open_orders)
        state = self.state
        what = f"order {order.client_order_id} ({order.side.value} {_n(order.amount)} {sym})"
        if state is RiskState.HALTED and not (reducing and order.reduce_only):
            return RiskDecision(
                False,
                f"state: {what} refused: the risk state is HALTED ({self._halt_reason}); only reduce_only "
                f"orders that reduce the position ({_n(pos)}) pass",
                "state",
            )
        if state is RiskState.REDUCING and not reducing:
            return RiskDecision(
                False,
                f"state: {what} refused: the risk state is REDUCING ({self.state_reason}); only orders that "
                f"reduce the position ({_n(pos)}, counting the open orders on the same side) pass",
                "state",
            )
        if order.reduce_only and not reducing:
            return RiskDecision(
                False,
                f"reduce_only: {what} is marked reduce_only but does not reduce the position {_n(pos)} "
                "(counting the open orders on the same side)",
                "reduce_only",
            )
        last = view.prices.get(sym)
        if not _good_price(last):
            return RiskDecision(
                False, f"price: {what} refused: no valid last price for {sym} ({last!r})", "price"
            )
        assert last is not None
        amount = order.amount
        lo = self._limit(sym, "min_amount")
        if lo is not None and amount < lo:
            return RiskDecision(
                False, f"min_amount: {what}: amount {_n(amount)} < limit {_n(lo)}", "min_amount"
            )
        hi = self._limit(sym, "max_amount")
        if hi is not None and amount > hi:
            return RiskDecision(
                False, f"max_amount: {what}: amount {_n(amount)} > limit {_n(hi)}", "max_amount"
            )
        is_limit = order.type is OrderType.LIMIT
        ref = max(order.price, last) if is_limit else last  # type: ignore[type-var]
        notional = amount * ref
        max_notional = self._limit(sym, "max_order_notional")
        if max_notional is not None and notional > max_notional:
            at = f"max(limit {_n(order.price)}, last {_n(last)})" if is_limit else f"last {_n(last)}"  # type: ignore[arg-type]
            return RiskDecision(
                False,
                f"max_order_notional: {what}: notional {_n(notional)} {_quote(sym)} (amount × {at}) "
                f"> limit {_n(max_notional)}",
                "max_order_notional",
            )
        band = self._limit(sym, "price_band")
        if is_limit and band is not None:
            off = abs(order.price - last) / last  # type: ignore[operator]
            if off > band:
                return RiskDecision(
                    False,
                    f"price_band: {what}: limit price {_n(order.price)} is {off:.4%} from the last price "  # type: ignore[arg-type]
                    f"{_n(last)} > limit {band:.4%}",
                    "price_band",
                )
        if state is not RiskState.HALTED:  # flattening orders in HALTED do not wait on the count limits
            max_open = self.limits.max_open_orders
            if max_open is not None and len(open_orders) >= max_open:
                return RiskDecision(
                    False,
                    f"max_open_orders: {what}: {len(open_orders)} orders already open, limit {max_open}",
                    "max_open_orders",
                )
            per_min = self.limits.max_orders_per_minute
            if per_min is not None:
                now = view.now_ms
                n = sum(1 for t in view.recent_order_ms if now - MINUTE_MS < t <= now)
                if n >= per_min:
                    return RiskDecision(
                        False,
                        f"max_orders_per_minute: {what}: {n} orders in the last 60 s, limit {per_min}",
                        "max_orders_per_minute",
                    )
        if reducing:
            return APPROVED
        if self._stale_ms is not None:
            fed = self._feeds.get(sym)
            if fed is not None and view.now_ms - fed > self._stale_ms:
                return RiskDecision(
                    False,
                    f"stale_feed_s: {what}: no price update for {sym} for {(view.now_ms - fed) / 1000:g} s "
                    f"> limit {self.limits.stale_feed_s:g} s; only reducing orders pass",
                    "stale_feed_s",
                )
        eq = view.equity
        if not (isinstance(eq, int | float) and math.isfinite(eq) and eq > 0):
            return RiskDecision(
                False, f"equity: {what}: the equity {eq!r} is not a positive number", "equity"
            )
        buys: dict[str, float] = {}
        sells: dict[str, float] = {}
        for o in (*open_orders, order):
            book = buys if o.side is Side.BUY else sells
            book[o.symbol] = book.get(o.symbol, 0.0) + (o.remaining if o is not order else o.amount)
        exposure_sym = _exposure(pos, buys.get(sym, 0.0), sells.get(sym, 0.0)) * last
        frac = self._limit(sym, "max_position_fraction")
        if exposure_sym > frac * eq:
            return RiskDecision(
                False,
                f"max_position_fraction: {what}: {sym} position {_n(pos)} with open orders and this one could "
                f"reach {_n(exposure_sym)} {_quote(sym)} = {exposure_sym / eq:.4f} of equity {_n(eq)} "
                f"> limit {frac:g}",
                "max_position_fraction",
            )
        gross = 0.0
        for s in {*view.positions, *buys, *sells}:
            e = _exposure(float(view.positions.get(s, 0.0)), buys.get(s, 0.0), sells.get(s, 0.0))
            if not e:
                continue
            px = view.prices.get(s)
            if not _good_price(px):
                return RiskDecision(
                    False,
                    f"price: {what} refused: no valid last price for {s} ({px!r}): cannot value the gross "
                    "exposure",
                    "price",
                )
            gross += e * px  # type: ignore[operator]
        lim = self.limits.max_gross_exposure
        if gross > lim * eq:
            return RiskDecision(
                False,
                f"max_gross_exposure: {what}: gross exposure with open orders and this one could reach "
                f"{_n(gross)} = {gross / eq:.4f} of equity {_n(eq)} > limit {lim:g}",
                "max_gross_exposure",
            )
        return APPROVED

    # ------------------------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """The state to persist (JSON-ready). The limits are not part of it: they come from the config."""
        return {
            "version": STATE_VERSION,
            "state": self.state.value,
            "halted": self._halted,
            "halt_reason": self._halt_reason,
            "reducing": self._manual_reduce,
            "reduce_reason": self._reduce_reason,
            "stale_feeds": sorted(self._stale),
            "feeds": dict(sorted(self._feeds.items())),
            "peak_equity": self._peak,
            "day": self._day,
            "day_start_equity": self._day_start,
            "last_equity": self._last_equity,
            "last_ms": self._last_ms,
            "since_ms": self._since_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], limits: RiskLimits) -> RiskManager:
        """Restore a persisted state (under the current ``limits``). A state that cannot be read is an error
        naming the key: the engine must not trade on a risk state it cannot explain."""
        if not isinstance(data, Mapping):
            raise RiskStateError(f"risk state: expected a mapping, got {type(data).__name__}")
        version = data.get("version")
        if version != STATE_VERSION:
            raise RiskStateError(
                f"risk state: version {version!r} is not supported (this workbench reads version {STATE_VERSION})"
            )

        def get(key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
            if key not in data:
                raise RiskStateError(f"risk state: key {key!r} is missing")
            v = data[key]
            if v is None and optional:
                return None
            if isinstance(v, bool) and kind is not bool:
                raise RiskStateError(f"risk state: {key} must be {_kind(kind)}, got {v!r}")
            if not isinstance(v, kind):
                raise RiskStateError(f"risk state: {key} must be {_kind(kind)}, got {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                raise RiskStateError(f"risk state: {key} must be a finite number, got {v!r}")
            return v

        num = (int, float)
        m = cls(limits)
        m._halted = get("halted", bool)
        m._halt_reason = get("halt_reason", str, optional=True)
        m._manual_reduce = get("reducing", bool)
        m._reduce_reason = get("reduce_reason", str, optional=True)
        feeds = get("feeds", Mapping)
        for k, v in feeds.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int):
                raise RiskStateError(f"risk state: feeds[{k!r}] must be a time in ms, got {v!r}")
        m._feeds = dict(feeds)
        stale = get("stale_feeds", list)
        if not all(isinstance(s, str) for s in stale):
            raise RiskStateError(f"risk state: stale_feeds must be a list of symbols, got {stale!r}")
        m._stale = set(stale)
        peak = get("peak_equity", num, optional=True)
        m._peak = None if peak is None else float(peak)
        m._day = get("day", int, optional=True)
        start = get("day_start_equity", num, optional=True)
        m._day_start = None if start is None else float(start)
        last = get("last_equity", num, optional=True)
        m._last_equity = None if last is None else float(last)
        m._last_ms = get("last_ms", int)
        m._since_ms = get("since_ms", int)
        state = data.get("state")
        if state != m.state.value:
            raise RiskStateError(
                f"risk state: state {state!r} does not match its flags (halted={m._halted}, "
                f"reducing={m._manual_reduce}, stale_feeds={sorted(m._stale)}): {m.state.value}"
            )
        return m


def _kind(kind: type | tuple[type, ...]) -> str:
    names = {bool: "true or false", str: "a string", int: "an integer", list: "a list", float: "a number"}
    if isinstance(kind, tuple):
        return "a number"
    return names.get(kind, f"a {kind.__name__}")


def _reduces(order: Order, pos: float, open_orders: Sequence[Order]) -> bool:
    if pos == 0.0 or (pos > 0) == (order.side is Side.BUY):
        return False
    same_side = sum(o.remaining for o in open_orders if o.symbol == order.symbol and o.side is order.side)
    return same_side + order.amount <= abs(pos) * (1 + _REDUCE_TOL)


def _exposure(pos: float, buys: float, sells: float) -> float:
    return max(abs(pos + buys), abs(pos - sells))
