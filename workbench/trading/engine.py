"""The trading engine: one session of one strategy on one account, event by event.

Flow (one asyncio task consumes one queue, so events are handled strictly in arrival order)::

    market events (feeds) -> strategy (CandleAdapter) -> intents -> orders -> risk manager -> order manager
        -> broker -> order updates and fills -> portfolio -> journal

* **Start.** Take the session's lock (one session per account and per name: a second ``trade run`` is refused),
  open the journal, restore the risk state (a HALT holds until a person clears it), rebuild the portfolio from
  the journal's fills, print what will be used (URLs, masked account, mode), connect the broker, **reconcile**
  (the order manager queries every order the journal has open; fills at the venue since the last journalled one
  are booked; live balances are compared with the portfolio: a difference stops the session before it trades),
  back-fill ``warmup`` closed candles over REST, then start the feeds.
* **Candles.** A candle is closed once a later one is seen or the exchange clock is past its end; each closed
  candle is journalled and fed to the adapter once. When a bar has closed for every symbol the adapter decides;
  orders go out at the next bar's open (paper fills use that open as their reference price, as the backtest).
* **Every price event** marks the portfolio to market: the risk manager's drawdown and daily-loss kill switch
  see each one; stops are checked against it; the journal gets a price snapshot about once a second (and a
  book snapshot per symbol about once a second when books are streamed, not one row per book update).
* **Commands** (``workbench trade pause|resume|flatten|cancel-all|stop|order|cancel|close|halt``) arrive through
  the journal's command table and are acknowledged there.
* **Manual stop-loss / take-profit**: an ``order`` command's ``stop`` / ``take_profit`` (a buy only) protect
  the symbol's manual sub-position once the buy fills, checked like the strategy's stops on every price event
  and closed candle; journalled as ``bracket`` rows and rebuilt from them at start (:meth:`_check_bracket`).
* **Flatten** (``trade flatten``, ``trade close``, ``trade halt --flatten``, the kill switch with
  ``flatten_on_halt``): reduce-only market sells, a position larger than one order may be split into children
  each within the per-order limits (:func:`split_amount`); the plan is journalled first and finished after a
  crash, never a child twice (:meth:`TradingEngine.flatten`).
* **Faults.** A feed that drops reconnects with backoff, back-fills the closed candles it missed and the order
  manager reconciles before the next decision; a stale feed puts the risk state to REDUCING; an order whose
  outcome is unknown is queried by client id, never resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from workbench.strategies.base import Strategy
from workbench.trading.brokers.base import BrokerError, MarketRuleError, OrderRejected
from workbench.trading.feeds import TRANSIENT_ERRORS, MarketFeed, fetch_closed_candles
from workbench.trading.journal import Journal, journal_path
from workbench.trading.orders import OrderManager, client_order_id, manual_order_id
from workbench.trading.portfolio import Portfolio
from workbench.trading.risk import RiskManager, RiskState, RiskView
from workbench.trading.session import (
    EngineError,
    SessionLock,
    account_lock_path,
    lock_path,
    session_status,
)
from workbench.trading.strategy import Bar, CandleAdapter, CandleTracker, Intent
from workbench.types import Fill, Order, OrderStatus, OrderType, Side, Timeframe

# EngineError, SessionLock, session_status: defined in workbench.trading.session (no ccxt), importable from here
__all__ = ["EngineError", "SessionLock", "SessionSpec", "TradingEngine", "session_status", "split_amount"]

SPEC_VERSION = 1
_BRACKET_ACTIVE = frozenset({"pending", "armed"})
_FLATTEN_GENERATIONS = 3  # a flatten's children never placed are sent again under new ids at most this often


@dataclass(frozen=True)
class SessionSpec:
    """What a session runs: the strategy, the market and the sizing (what ``trade run`` is given)."""

    name: str
    strategy: str
    params: dict[str, Any]
    exchange: str
    symbols: tuple[str, ...]
    timeframe: str
    mode: str  # paper | live
    size: float = 1.0
    sl: float | None = None
    tp: float | None = None
    direction: str = "long"
    account: str = "paper"

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["symbols"] = list(self.symbols)
        d["version"] = SPEC_VERSION
        return d


@dataclass
class EngineOptions:
    fee_taker: float = 0.001
    fee_maker: float = 0.001
    slippage: float = 0.0005
    stale_s: float = 60.0
    book: bool = False
    snapshot_every_s: float = 1.0
    close_grace_ms: int = 2000
    poll_orders_s: float = 1.0
    initial_cash: float = 10_000.0
    quote: str = "USDT"
    flatten_on_halt: bool = False
    journal_synchronous: str = "FULL"  # trading.journal_synchronous: FULL | NORMAL (see Journal)
    outcome_window_s: float = 15.0
    buy_cash_fraction: float = 1.0  # of the quote balance a buy may spend (trading.tradable_balance_ratio)
    log: Callable[[str], None] = field(default=print)

    def __post_init__(self) -> None:
        if not 0.0 < self.buy_cash_fraction <= 1.0:  # NaN fails this too
            raise ValueError(f"buy_cash_fraction must lie in (0, 1], got {self.buy_cash_fraction!r}")


class TradingEngine:
    def __init__(
        self,
        spec: SessionSpec,
        strategy: Strategy,
        *,
        data_dir: Path,
        client: Any,
        broker: Any,
        risk: RiskManager,
        options: EngineOptions,
        clock_offset_ms: int = 0,
    ) -> None:
        self.spec = spec
        self.strategy = strategy
        self.data_dir = Path(data_dir)
        self.client = client
        self.broker = broker
        self.risk = risk
        self.opt = options
        self.log = options.log
        self.tf = Timeframe.parse(spec.timeframe)
        self.offset_ms = clock_offset_ms
        self.queue: asyncio.Queue = asyncio.Queue()
        self.journal: Journal | None = None
        self.portfolio = Portfolio(options.quote, {options.quote: options.initial_cash})
        self.adapter = CandleAdapter(strategy, list(spec.symbols), spec.timeframe, spec.size, spec.direction)
        self.trackers: dict[str, CandleTracker] = {}
        self.prices: dict[str, float] = {}
        self.opens: dict[str, float] = {}
        self.recent_orders: list[int] = []
        self.paused = False
        self.stopping = asyncio.Event()
        self.orders: OrderManager | None = None
        self._cmd_seq = 0
        self._last_snapshot = 0.0
        self._last_book: dict[str, float] = {}
        self._seq_in_bar: dict[int, int] = {}
        self._locks: list[SessionLock] = []
        self.events = 0
        self.market_ms = 0
        self._stale: set[str] = set()
        self._reduced_for_stale = False
        self.brackets: dict[str, dict[str, Any]] = {}
        self._flatten_pending: dict[str, Any] | None = None  # a flatten plan with children not settled yet
        """symbol -> the manual sub-position's stop-loss / take-profit (the latest ``bracket`` row, if active)."""

    # ------------------------------------------------------------------ clock

    def now_ms(self) -> int:
        """The exchange's clock: the local clock corrected by the offset measured at start, and never before the
        newest candle seen (a replay exchange's clock runs at its replay speed; its candles carry its time)."""
        return max(int(time.time() * 1000) + self.offset_ms, self.market_ms)

    # ------------------------------------------------------------------ start and stop

    def _lock(self) -> None:
        for path, what in (
            (lock_path(self.data_dir, self.spec.name), f"session {self.spec.name!r}"),
            (account_lock_path(self.data_dir, self.spec.exchange, self.spec.account),
             f"a session on account {self.spec.exchange}/{self.spec.account}"),
        ):  # fmt: skip
            lk = SessionLock(path, what)
            lk.acquire()
            self._locks.append(lk)

    def _open_journal(self) -> None:
        path = journal_path(self.data_dir, self.spec.name)
        self.journal = Journal(path, synchronous=self.opt.journal_synchronous)
        self.journal.start_checkpointer()  # WAL checkpoints off the event loop's commits (p99 latency)
        j = self.journal
        old = j.meta_get("spec")
        if old is None:
            j.meta_set("spec", self.spec.to_dict())
        else:
            mine = self.spec.to_dict()
            for k in ("strategy", "exchange", "symbols", "timeframe", "mode"):
                if old.get(k) != mine.get(k):
                    raise EngineError(
                        f"session {self.spec.name!r} was started with {k}={old.get(k)!r}, now {mine.get(k)!r}: "
                        "use another --session name (a session's journal belongs to one setup)"
                    )
        risk = j.meta_get("risk")
        if risk:
            self.risk = RiskManager.from_dict(risk, self.risk.limits)
        adapter = j.meta_get("adapter")
        if adapter:
            self.adapter.restore(adapter)
        for r in j.read(kinds=["bracket"]):  # the latest row per symbol is its state
            if r.data.get("status") in _BRACKET_ACTIVE:
                self.brackets[str(r.key)] = dict(r.data)
            else:
                self.brackets.pop(str(r.key), None)
        fills = j.fills()
        init = j.meta_get("initial_balances") or {self.opt.quote: self.opt.initial_cash}
        j.meta_set("initial_balances", init)
        self.portfolio = Portfolio.from_fills(self.opt.quote, init, fills)

    def _save_state(self) -> None:
        assert self.journal is not None
        self.journal.meta_set_many({"risk": self.risk.to_dict(), "adapter": self.adapter.state()})

    async def start(self) -> None:
        self._lock()
        self._open_journal()
        j = self.journal
        assert j is not None
        j.record_state(self.now_ms(), "STARTING", f"pid {os.getpid()}", risk=self.risk.state.value)
        self.orders = OrderManager(
            j, self.broker, self.spec.name, clock_ms=self.now_ms, fill_listener=self._apply_fill,
            outcome_window_s=self.opt.outcome_window_s,
        )  # fmt: skip
        await self.broker.connect()  # before market(): a live broker loads the venue's markets here
        j.meta_set(
            "markets", {s: {"amount_step": self.broker.market(s).amount_step} for s in self.spec.symbols}
        )
        if hasattr(self.broker, "restore"):
            self.broker.restore(j.orders().values(), j.fills())
        await self._reconcile("start")
        await self._backfill(initial=True)
        await self._resume_flatten()  # after the back-fill: the children are valued at a current price
        j.record_state(self.now_ms(), "RUNNING", "", risk=self.risk.state.value)
        self._save_state()

    async def stop(self, reason: str = "stopped") -> None:
        self.stopping.set()
        if self.journal is not None:
            self._save_state()
            self.journal.record_state(self.now_ms(), "STOPPED", reason, risk=self.risk.state.value)
            self.journal.close()
        with contextlib.suppress(Exception):
            await self.broker.close()
        for lk in self._locks:
            lk.release()

    # ------------------------------------------------------------------ reconciliation

    async def _reconcile(self, why: str) -> None:
        """Open orders queried at the venue, missed fills booked, balances compared (live)."""
        assert self.orders is not None and self.journal is not None
        report = await self.orders.recover()
        if not report.ok:
            self.journal.record_risk(self.now_ms(), "unreconciled", "; ".join(report.problems)[:2000])
            raise EngineError(
                f"session {self.spec.name!r}: orders could not be reconciled with the venue ({why}): "
                + "; ".join(report.problems[:5])
                + ". Trading refused until they are"
            )
        since = self.journal.last_fill_ts()
        for s in self.spec.symbols:
            for f in await self.broker.fetch_fills(s, None if since is None else since - 60_000):
                self._book_fill(f)
        if self.spec.mode == "live":
            venue = await self.broker.fetch_balances()
            diffs = self.portfolio.reconcile(venue, tolerance=1e-6)
            if diffs:
                self.journal.record_risk(self.now_ms(), "unreconciled", "; ".join(diffs)[:2000])
                raise EngineError(
                    f"session {self.spec.name!r}: the venue's balances differ from the journal ({why}): "
                    + "; ".join(diffs[:5])
                    + ". Trading refused: check the account, then start the session again"
                )

    def _book_fill(self, f: Fill) -> None:
        """A fill seen at the venue: recorded once by the order manager, which then calls :meth:`_apply_fill`."""
        assert self.orders is not None
        self.orders.on_fill(f)

    def _apply_fill(self, f: Fill) -> None:
        assert self.journal is not None
        self.portfolio.apply(f)
        b = self.brackets.get(f.symbol)
        if b is not None and b["status"] == "pending" and f.client_order_id == b.get("entry"):
            self._set_bracket(f.symbol, "armed", armed_ms=int(f.timestamp), replaces=None)
        self.journal.record_position(
            f.timestamp, f.symbol, self.portfolio.position(f.symbol).amount, tag=f.tag
        )
        view = self._view()
        for e in self.risk.on_fill(f, view):
            self.journal.record_risk(e.ts_ms, e.event, e.reason, **e.extra())

    # ------------------------------------------------------------------ candles

    async def _backfill(self, initial: bool = False) -> None:
        """Closed candles over REST: the warm-up at start, the gap after a reconnect."""
        now = self.now_ms()
        for s in self.spec.symbols:
            tr = self.trackers.get(s)
            if tr is None:
                tr = self.trackers[s] = CandleTracker(s, self.spec.timeframe)
            since = (
                now - (self.adapter.warmup + 2) * self.tf.ms
                if tr.last_emitted is None
                else tr.last_emitted + self.tf.ms
            )
            rows = await fetch_closed_candles(self.client, s, self.spec.timeframe, self.tf.floor(since), now)
            bars = tr.update(rows, now_ms=now)
            if initial and tr.last_emitted is not None:
                # the candle now forming: its open is the price a decision due now is sized and filled at, if
                # it began moments ago (a session started on a bar boundary, as a replay starts); else the last
                cur = await self.client.fetch_ohlcv(
                    s, self.spec.timeframe, since=tr.last_emitted + self.tf.ms, limit=1
                )
                if cur and int(cur[0][0]) == tr.last_emitted + self.tf.ms:
                    self.market_ms = max(self.market_ms, int(cur[0][0]))
                    self.prices[s] = float(cur[0][4])
                    if now - int(cur[0][0]) <= self.tf.ms // 20:
                        self.opens[s] = float(cur[0][1])
            if initial:
                self.adapter.seed(s, bars)
            else:
                for b in bars:
                    self._closed(b)
        if initial:
            # a decision due on the last closed bar (after a restart, or at the session's start) is taken now,
            # at the current price: the bar it would have opened has begun
            last = min((tr.last_emitted or 0) for tr in self.trackers.values())
            if last and (self.adapter.last_bar is None or self.adapter.last_bar < last):
                opens = {s: self.opens.get(s) for s in self.spec.symbols}
                await self._decide(last, opens=opens if all(v is not None for v in opens.values()) else None)

    def _closed(self, b: Bar) -> None:
        """A closed candle: journalled, handed to the adapter, and the equity marked at its close (stamped with
        the bar's open time, as the backtest's equity curve is)."""
        j = self.journal
        assert j is not None
        self.adapter.add(b)
        rows = [j.candle_row(b.symbol, self.spec.timeframe, [b.ts, b.open, b.high, b.low, b.close, b.volume])]
        prices = {**self.prices, b.symbol: b.close}
        try:
            eq = self.portfolio.equity(prices)
        except (KeyError, ValueError):
            pass
        else:
            cash = self.portfolio.balances.get(self.opt.quote, 0.0)
            rows.append(j.equity_row(b.ts, eq, cash=cash, bar=True))
        j.append_many(rows)  # the candle and its equity mark: one commit (one fsync under FULL), not two

    async def _on_candles(self, symbol: str, rows: list[list[float]]) -> None:
        tr = self.trackers[symbol]
        if rows:
            self.market_ms = max(self.market_ms, int(rows[-1][0]))
            first_new = min(
                (int(r[0]) for r in rows if tr.last_emitted is None or r[0] > tr.last_emitted), default=None
            )
            if (
                tr.last_emitted is not None
                and first_new is not None
                and first_new > tr.last_emitted + self.tf.ms
            ):
                # candles were missed (a slow start, a dropped stream): back-fill them over REST before acting
                await self._backfill()
        closed = tr.update(rows, now_ms=None)
        for b in closed:
            self._closed(b)
            if self.spec.sl is not None or self.spec.tp is not None:
                await self._check_stops(symbol, b)
            if symbol in self.brackets:
                await self._check_bracket(symbol, b, b.close)
        cur = tr.open_candle()
        if cur is not None:
            if tr.last_emitted is not None and cur.ts == tr.last_emitted + self.tf.ms:
                self.opens[symbol] = cur.open  # the open of the bar that follows the last closed one
            await self._on_price(symbol, cur.close, low=cur.low, high=cur.high, volume=None, bar=cur)
        last = min((t.last_emitted or 0) for t in self.trackers.values())
        if last and self.adapter.ready(last):
            await self._decide(
                last, opens={s: self.opens.get(s, self.prices.get(s)) for s in self.spec.symbols}
            )

    async def _on_price(self, symbol: str, last: float, **kw: Any) -> None:
        bar = kw.pop("bar", None)
        self.prices[symbol] = last
        if hasattr(self.broker, "on_price"):
            self.broker.on_price(symbol, last=last, **{k: v for k, v in kw.items() if v is not None})
            await self._drain_paper_fills()
        self.risk.watch_feed(symbol, self.now_ms()) if hasattr(self.risk, "watch_feed") else None
        eq = self._equity()
        assert self.journal is not None
        for e in self.risk.on_mark(self.now_ms(), eq, symbol):
            self.journal.record_risk(e.ts_ms, e.event, e.reason, **e.extra())
            if e.is_state_change:
                self.journal.record_state(e.ts_ms, "RISK", e.reason, risk=self.risk.state.value)
                self._save_state()
                if self.risk.state is RiskState.HALTED:
                    await self._on_halt()
        if bar is not None and (self.spec.sl is not None or self.spec.tp is not None):
            await self._check_stops(symbol, bar)
        if symbol in self.brackets:
            await self._check_bracket(symbol, bar, last)
        t = time.monotonic()
        if t - self._last_snapshot >= self.opt.snapshot_every_s:
            self._last_snapshot = t
            self.journal.record_price(self.now_ms(), symbol, last)
            self.journal.record_equity(
                self.now_ms(), eq, cash=self.portfolio.balances.get(self.opt.quote, 0.0), bar=False
            )

    async def _drain_paper_fills(self) -> None:
        pending = getattr(self, "_paper_fills", None)
        if pending:
            self._paper_fills = []
            for f in pending:
                self._book_fill(f)

    def on_paper_fill(self, fill: Fill, order: Order) -> None:
        """The paper broker's callback (called inside submit or on_price)."""
        if not hasattr(self, "_paper_fills"):
            self._paper_fills: list[Fill] = []
        self._paper_fills.append(fill)

    # ------------------------------------------------------------------ decisions and orders

    def _equity(self) -> float:
        prices = {s: p for s, p in self.prices.items() if p}
        try:
            return self.portfolio.equity(prices)
        except (KeyError, ValueError):
            return float("nan")

    def _view(self) -> RiskView:
        assert self.orders is not None
        now = self.now_ms()
        self.recent_orders = [t for t in self.recent_orders if t > now - 60_000]
        positions = {s: self.portfolio.position(s).amount for s in self.portfolio.symbols}
        return RiskView(
            now_ms=now,
            equity=self._equity(),
            positions=positions,
            prices=dict(self.prices),
            open_orders=self.orders.open_orders(),
            recent_order_ms=list(self.recent_orders),
        )

    async def _decide(self, bar_ms: int, opens: dict[str, float | None] | None) -> None:
        assert self.journal is not None
        if opens is None or any(v is None for v in opens.values()):
            opens = {
                s: self.prices.get(s) or self.adapter.frame(s)["close"].iloc[-1] for s in self.spec.symbols
            }
        if self.paused:
            self.adapter.last_bar = bar_ms
            self._save_state()
            return
        positions = {s: self.portfolio.position(s, "strategy").amount for s in self.spec.symbols}
        cash = self.portfolio.balances.get(self.opt.quote, 0.0)
        intents = self.adapter.decide(bar_ms, positions=positions, cash=cash, opens=opens)  # type: ignore[arg-type]
        # "decided" is saved once the bar's orders are journalled: a crash before (even while the first order's
        # POST is in flight) makes the restart decide the bar again, and the orders already journalled are known
        # by their ids. One intent per symbol and bar: seq 0, so an id does not depend on the other symbols.
        for intent in intents:
            await self._execute(intent, seq=0, positions=positions)
        self._save_state()
        self.journal.meta_set("decided", {"bar": bar_ms, "orders": len(intents)})

    def _sized(self, intent: Intent, position: float) -> float:
        """The amount sent: lot-rounded, a buy capped by the quote balance (its ``buy_cash_fraction``) at the
        expected fill price, a sell by the position held (spot)."""
        rules = self.broker.market(intent.symbol)
        amount = intent.amount
        if intent.side is Side.BUY:
            price = intent.ref_price * (1 + self.opt.slippage)
            cash = max(self.portfolio.balances.get(self.opt.quote, 0.0), 0.0) * self.opt.buy_cash_fraction
            cap = cash / (price * (1 + self.opt.fee_taker))
            # fail closed: a cap that is not a number (no reference price) buys nothing, where min() would
            # have ignored it
            amount = min(amount, cap) if math.isfinite(cap) else 0.0
        else:
            amount = min(amount, max(position, 0.0)) if math.isfinite(position) else 0.0
        return rules.round_amount(amount)

    async def _execute(
        self, intent: Intent, *, seq: int, positions: dict[str, float], tag: str = "strategy"
    ) -> None:
        assert self.journal is not None and self.orders is not None
        amount = self._sized(intent, positions.get(intent.symbol, 0.0))
        cid = client_order_id(self.spec.name, self.spec.strategy, intent.symbol, intent.bar_ms, seq)
        if cid in self.orders.orders:
            return  # decided and sent before a restart: never twice
        if amount <= 0:
            self.journal.record_risk(
                self.now_ms(), "skipped", f"{intent.symbol}: nothing to trade after rounding"
            )
            return
        order = Order(cid, intent.symbol, intent.side, OrderType.MARKET, amount, created_ms=self.now_ms(),
                      updated_ms=self.now_ms(), tag=tag, reduce_only=intent.reason != "signal" and intent.side is Side.SELL)  # fmt: skip
        await self._submit(
            order, ref_price=intent.ref_price, ref_ms=intent.bar_ms if intent.reason == "signal" else None
        )

    async def _submit(self, order: Order, ref_price: float | None = None, ref_ms: int | None = None) -> Order:
        assert self.journal is not None and self.orders is not None
        rules = self.broker.market(order.symbol)
        try:
            rules.check(order.amount, order.price or ref_price or self.prices.get(order.symbol))
        except MarketRuleError as e:
            self.journal.record_risk(self.now_ms(), "refused", str(e), client_order_id=order.client_order_id)
            return self.orders.deny(order, str(e))
        decision = self.risk.check(order, self._view())
        if not decision.ok:
            denied = self.orders.deny(order, decision.reason)
            e = decision.event(order, self.now_ms(), self.risk.state)
            self.journal.record_risk(e.ts_ms, e.event, e.reason, **e.extra())
            return denied
        if ref_price is not None and hasattr(self.broker, "set_reference"):
            self.broker.set_reference(order.symbol, ref_price, ref_ms)
        self.recent_orders.append(self.now_ms())
        result = await self.orders.submit(order)
        await self._drain_paper_fills()
        return result

    async def _check_stops(self, symbol: str, bar: Bar) -> None:
        """The backtest's stop rules (``workbench.sim.fills.stop_trigger``) on the strategy's sub-position: on
        every update of the forming candle (a stop fires as the price crosses its level), and once more on the
        candle's final range when it closes (a move the updates did not show). The fill is a market order at the
        level (or at the open when the bar opened through it); a stop found on a closed candle is stamped with
        that candle's time. After a stop the asset stays flat until the strategy's target changes again."""
        from workbench.sim.fills import stop_trigger

        pos = self.portfolio.position(symbol, "strategy")
        if pos.amount <= 0:
            return
        nan = float("nan")
        reason, px = stop_trigger(
            pos.amount, pos.avg_price, pos.avg_price, bar.open, bar.high, bar.low,
            self.spec.sl if self.spec.sl is not None else nan, self.spec.tp if self.spec.tp is not None else nan,
            False,
        )  # fmt: skip
        if reason < 0:
            return
        why = "stop_loss" if reason == 1 else "take_profit"
        intent = Intent(symbol, Side.SELL, pos.amount, float(px), bar.ts, 0.0, reason=why)
        amount = self._sized(intent, pos.amount)
        if amount <= 0:
            return
        cid = client_order_id(self.spec.name, self.spec.strategy, symbol, bar.ts, 90 + int(reason))
        if cid in self.orders.orders:  # type: ignore[union-attr]
            return
        order = Order(cid, symbol, Side.SELL, OrderType.MARKET, amount, created_ms=self.now_ms(),
                      updated_ms=self.now_ms(), tag="strategy", reduce_only=True, reason=why)  # fmt: skip
        await self._submit(order, ref_price=float(px), ref_ms=bar.ts if bar.closed else None)

    # ------------------------------------------------------------------ manual stop-loss / take-profit

    def _set_bracket(self, symbol: str, status: str, **changes: Any) -> dict[str, Any]:
        """Journal the symbol's bracket after a change (a ``bracket`` row, key = symbol), then keep it."""
        assert self.journal is not None
        d = {**self.brackets.get(symbol, {}), **changes, "symbol": symbol, "status": status}
        self.journal.append("bracket", d, key=symbol, ts=self.now_ms())
        if status in _BRACKET_ACTIVE:
            self.brackets[symbol] = d
        else:
            self.brackets.pop(symbol, None)
        return d

    def _bracket_levels(self, args: dict[str, Any], symbol: str, side: Side, ref: float | None) -> tuple:
        """The ``order`` command's ``stop`` / ``take_profit`` checked (absolute prices in the quote currency);
        an EngineError says why they are refused (nothing is sent then)."""
        levels = []
        for key, name in (("stop", "stop"), ("take_profit", "take-profit")):
            v = args.get(key)
            if v is None:
                levels.append(None)
                continue
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise EngineError(f"{name}: a price in the quote currency, not {v!r}") from None
            if not (math.isfinite(x) and x > 0):
                raise EngineError(f"{name}: a positive finite price, not {v!r}")
            levels.append(x)
        stop, tp = levels
        if stop is None and tp is None:
            return None, None
        if side is not Side.BUY:
            raise EngineError(
                "stop / take-profit protect a long position: only a buy carries them (spot, long only); "
                "send the sell without them"
            )
        if ref is None or not (math.isfinite(ref) and ref > 0):
            raise EngineError(f"{symbol}: no last price yet to check the stop / take-profit against")
        if stop is not None and not stop < ref:
            raise EngineError(f"stop: {stop:g} must be below the reference price {ref:g} of this buy")
        if tp is not None and not tp > ref:
            raise EngineError(f"take-profit: {tp:g} must be above the reference price {ref:g} of this buy")
        return stop, tp

    async def _check_bracket(self, symbol: str, bar: Bar | None, last: float) -> None:
        """The manual sub-position's stop-loss / take-profit, with the backtest's stop rule
        (``workbench.sim.fills.stop_trigger``, a level per call so that the level is exact): a bar that opens
        through a level fills at its open, one whose range reaches it at the level. The bar the entry filled
        in is checked against each price seen after the fill only (its range before the fill says nothing),
        the bars after it against their open, high and low. A trigger sends a reduce-only market sell of the
        manual sub-position (reason ``stop_loss`` / ``take_profit``) through the risk manager; the levels end
        with it, or when the manual position is closed otherwise."""
        from workbench.sim.fills import stop_trigger

        assert self.orders is not None
        b = self.brackets.get(symbol)
        if b is None:
            return
        if b["status"] == "pending":
            entry = self.orders.orders.get(str(b.get("entry")))
            if entry is None:
                return
            if entry.filled > 0:  # filled while the engine was down: armed from now
                b = self._set_bracket(symbol, "armed", armed_ms=self.now_ms(), replaces=None)
            else:
                if not entry.status.is_open:
                    self._set_bracket(symbol, "canceled", reason=f"the entry {entry.status.value}, unfilled")
                return
        rules = self.broker.market(symbol)
        held = rules.round_amount(
            min(self.portfolio.position(symbol, "manual").amount, self.portfolio.position(symbol).amount)
        )
        if held <= 0:
            self._set_bracket(symbol, "canceled", reason="the manual position is closed")
            return
        armed_bar = self.tf.floor(int(b["armed_ms"]))
        ts = self.tf.floor(self.now_ms()) if bar is None else bar.ts
        if ts < armed_bar:
            return
        o, h, lo = (last, last, last) if bar is None or ts == armed_bar else (bar.open, bar.high, bar.low)
        nan = float("nan")
        reason, px = -1, nan
        if b.get("stop") is not None:
            lvl = float(b["stop"])
            reason, px = stop_trigger(held, lvl, lvl, o, h, lo, 0.0, nan, False)
        if reason < 0 and b.get("take_profit") is not None:
            lvl = float(b["take_profit"])
            reason, px = stop_trigger(held, lvl, lvl, o, h, lo, nan, 0.0, False)
        reason = int(reason)
        if reason < 0:
            return
        why = "stop_loss" if reason == 1 else "take_profit"
        # one attempt per bracket and bar: a refused sell (journalled with its reason) is tried again next bar
        nonce = int(b.get("command_seq", 0)) * 10 + reason
        # a position larger than one order may carry is sold in children within the per-order limits, as a
        # flatten is (the first child keeps the single order's id); each id is fixed by the bar and the level
        amounts = self._split(symbol, held)
        cids = [
            client_order_id(self.spec.name, "bracket", symbol, ts, nonce if k == 0 else nonce * 1000 + k)
            for k in range(len(amounts))
        ]
        if all(c in self.orders.orders for c in cids):
            return
        denied = False
        for cid, amount in zip(cids, amounts, strict=True):
            if cid in self.orders.orders:
                continue
            order = Order(cid, symbol, Side.SELL, OrderType.MARKET, amount, created_ms=self.now_ms(),
                          updated_ms=self.now_ms(), tag="manual", reduce_only=True, reason=why)  # fmt: skip
            r = await self._submit(
                order, ref_price=float(px), ref_ms=ts if bar is not None and bar.closed else None
            )
            denied = denied or r.status is OrderStatus.DENIED
        if not denied:  # a refused child leaves the levels armed: the rest is tried again on a later bar
            self._set_bracket(symbol, "triggered", reason=why, order=cids[0], orders=cids, level=float(px))

    async def _on_halt(self) -> None:
        assert self.orders is not None
        await self.orders.cancel_all()
        if self.opt.flatten_on_halt or getattr(self.risk, "should_flatten", False):
            await self.flatten("halt")

    async def flatten(
        self, why: str, key: int | None = None, symbols: list[str] | None = None, kind: str = "flatten"
    ) -> list[Order]:
        """Close every position at market with reduce-only sells, each within every per-order limit (a position
        larger than ``max_order_notional`` at the last price, ``max_amount`` or the market's maximum is split:
        :func:`split_amount`). ``key``: the command's journal sequence number (the kill switch: its time).

        The plan (every child's client id and amount) is journalled in the meta (``flatten``) before the first
        child is sent and marked done after the last: a command handled again after a crash (same ``key``) and
        a restart in the middle of a kill-switch flatten (:meth:`_resume_flatten`) send the children not sent
        yet, never one twice (ids ``client_order_id(session, kind, symbol, key, i)``). ``symbols``: only these
        (``trade close``: one, ``kind`` "close")."""
        assert self.journal is not None
        key = self.now_ms() if key is None else key
        plan = self.journal.meta_get("flatten")
        # the same command handled again (after a crash): its plan, not a new one from what is left
        same = plan and plan.get("key") == key and plan.get("kind", "flatten") == kind
        if not same:
            plan = {"key": key, "kind": kind, "why": why, "gen": 0, "done": False, "orders": []}
            for s in symbols or self.spec.symbols:
                if s in self.brackets:  # the position is closed otherwise: its levels end
                    self._set_bracket(s, "canceled", reason=f"{kind} ({why})")
                total = self.broker.market(s).round_amount(max(self.portfolio.position(s).amount, 0.0))
                if total > 0:
                    for i, a in enumerate(self._split(s, total)):
                        plan["orders"].append([client_order_id(self.spec.name, kind, s, key, i), s, a])
            self.journal.meta_set("flatten", plan)
        return await self._run_flatten(plan)

    def _split(self, symbol: str, total: float) -> list[float]:
        rules = self.broker.market(symbol)
        last = self.prices.get(symbol)
        cap = self.risk.max_order_amount(symbol, last)
        if rules.max_amount is not None:
            cap = min(cap, rules.max_amount)
        lo = max(self.risk.min_order_amount(symbol), rules.min_amount)
        if rules.min_notional and last:
            lo = max(lo, rules.min_notional / last)
        return split_amount(total, cap, rules.amount_step, lo)

    async def _run_flatten(self, plan: dict[str, Any]) -> list[Order]:
        """Send the plan's children not sent yet (in order). When children not sent yet no longer fit the
        per-order limits (the price rose while the engine was down), or a child was never placed (REJECTED,
        nothing filled: its outcome was unknown when the engine died), those amounts are split again first (ids
        of a new generation, the plan journalled again before any is sent)."""
        assert self.journal is not None and self.orders is not None

        def sent(cid: str) -> Order | None:
            o = self.orders.orders.get(cid)  # type: ignore[union-attr]
            return None if o is None or o.status is OrderStatus.INITIALIZED else o

        unsent = [c for c in plan["orders"] if sent(c[0]) is None]
        # a child the venue never placed (its outcome was unknown when the engine died: not found at the venue)
        lost = [
            c for c in plan["orders"]
            if (o := sent(c[0])) is not None and o.status is OrderStatus.REJECTED and o.filled == 0
        ]  # fmt: skip
        if len(lost) and int(plan.get("gen", 0)) >= _FLATTEN_GENERATIONS:
            self.journal.record_risk(
                self.now_ms(), "flatten_incomplete",
                f"{len(lost)} flatten order(s) not placed after {_FLATTEN_GENERATIONS} tries: "
                + ", ".join(c[0] for c in lost),
            )  # fmt: skip
            lost = []
        if lost or any(a > self._split(s, a)[0] * (1 + 1e-12) for _, s, a in unsent):
            unsent = unsent + lost
            gen = int(plan.get("gen", 0)) + 1
            keep = [c for c in plan["orders"] if sent(c[0]) is not None and c not in lost]
            for s in dict.fromkeys(c[1] for c in unsent):
                total = math.fsum(a for _, sym, a in unsent if sym == s)
                total = self.broker.market(s).round_amount(total * (1 + 1e-12))
                for i, a in enumerate(self._split(s, total)):
                    cid = client_order_id(
                        self.spec.name, plan.get("kind", "flatten"), s, plan["key"], gen * 1000 + i
                    )
                    keep.append([cid, s, a])
            plan = {**plan, "gen": gen, "orders": keep}
            self.journal.meta_set("flatten", plan)
        out = []
        before = self._flatten_pending
        why = plan.get("why") or "flatten"
        for cid, s, amount in plan["orders"]:
            known = sent(cid)
            if known is not None:
                out.append(known)
                continue
            o = Order(cid, s, Side.SELL, OrderType.MARKET, float(amount), created_ms=self.now_ms(),
                      updated_ms=self.now_ms(), tag="manual", reduce_only=True, reason=why)  # fmt: skip
            out.append(await self._submit(o, ref_price=self.prices.get(s)))
        # done once no child is open any more (an outcome still unknown may yet turn out "never placed": the
        # timer runs the plan again until then, and a child never placed is sent again under a new id)
        settled = all(not r.status.is_open for r in out)
        unplaced = any(r.status is OrderStatus.REJECTED and r.filled == 0 for r in out)
        done = settled and (not unplaced or int(plan.get("gen", 0)) >= _FLATTEN_GENERATIONS)
        self._flatten_pending = None if done else {**plan, "done": False}
        if done or self._flatten_pending != before or unsent:  # not on every timer tick while it waits
            self.journal.meta_set("flatten", {**plan, "done": done})
        return out

    async def _resume_flatten(self) -> None:
        """At start: a flatten the engine died in the middle of (its plan not done) is finished."""
        assert self.journal is not None
        plan = self.journal.meta_get("flatten")
        if plan and not plan.get("done"):
            self.journal.log("warning", f"finishing the flatten ({plan.get('why')}) begun before the restart")
            await self._run_flatten(plan)

    async def _flatten_tick(self) -> None:
        """The timer: a flatten whose children are not all settled is run again (see :meth:`_run_flatten`)."""
        if self._flatten_pending is not None:
            await self._run_flatten(self._flatten_pending)

    # ------------------------------------------------------------------ commands

    async def _commands(self) -> None:
        assert self.journal is not None
        reader = Journal(self.journal.path, readonly=True)
        self._cmd_seq = self.journal.meta_get("commands_seq") or 0
        try:
            while not self.stopping.is_set():
                for row in reader.pending_commands(self._cmd_seq):
                    await self.queue.put(("command", None, row))
                    self._cmd_seq = row.seq
                await asyncio.sleep(0.2)
        finally:
            reader.close()

    async def _handle_command(self, row: Any) -> None:
        assert self.journal is not None and self.orders is not None
        data = row.data
        cid, name, args = data.get("id"), data.get("name"), data.get("args") or {}
        ok, msg, extra = True, "", {}
        try:
            if name == "status":
                extra = {"status": self.status()}
            elif name == "pause":
                self.paused = True
                msg = "paused: the strategy sends no new orders"
            elif name == "resume":
                if args.get("clear_halt"):
                    for e in self.risk.clear_halt(
                        args.get("reason") or "cleared by a person", ts_ms=self.now_ms()
                    ):
                        self.journal.record_risk(e.ts_ms, e.event, e.reason, **e.extra())
                elif self.risk.state is RiskState.HALTED:
                    raise EngineError(
                        "the session is HALTED: resume needs --clear-halt (a person's decision)"
                    )
                elif self.risk.state is RiskState.REDUCING:
                    for e in self.risk.resume(ts_ms=self.now_ms()):
                        self.journal.record_risk(e.ts_ms, e.event, e.reason, **e.extra())
                self.paused = False
                msg = f"resumed (risk {self.risk.state.value})"
            elif name == "halt":
                for e in self.risk.halt(args.get("reason") or "halted by a person", ts_ms=self.now_ms()):
                    self.journal.record_risk(e.ts_ms, e.event, e.reason, **e.extra())
                self._save_state()  # HALTED before anything is canceled or sold: a crash from here restarts HALTED
                await self.orders.cancel_all()
                if args.get("flatten"):
                    await self.flatten("halt", key=row.seq)
                msg = "HALTED: open orders canceled" + (
                    ", positions flattened" if args.get("flatten") else ""
                )
            elif name == "flatten":
                await self.orders.cancel_all()
                done = await self.flatten("flatten", key=row.seq)
                denied = [r for r in done if r.status is OrderStatus.DENIED]
                ok = not denied
                msg = f"flatten: {len(done)} order(s)" + (
                    f", {len(denied)} refused ({denied[0].reason})" if denied else ""
                )
            elif name == "cancel-all":
                n = await self.orders.cancel_all()
                msg = f"cancel-all: {len(n)} order(s) canceled"
            elif name == "cancel":
                await self.orders.cancel(args["client_order_id"])
                msg = f"cancel sent for {args['client_order_id']}"
            elif name == "close":
                s = args["symbol"]
                if s not in self.spec.symbols:
                    raise EngineError(f"{s} is not a symbol of this session ({', '.join(self.spec.symbols)})")
                done = await self.flatten("close", key=row.seq, symbols=[s], kind="close")
                if not done:
                    raise EngineError(f"no position in {s} to close")
                ok = all(r.status is not OrderStatus.DENIED for r in done)
                msg = f"close {s}: " + ", ".join(
                    r.status.value + (f" ({r.reason})" if r.reason else "") for r in done
                )
                extra = {"order": done[0].client_order_id, "orders": [r.client_order_id for r in done]}
            elif name == "order":
                typ = OrderType(args.get("type", "market"))
                sym, side = args["symbol"], Side(args["side"])
                price = float(args["price"]) if args.get("price") is not None else None
                ref = price if typ is OrderType.LIMIT else self.prices.get(sym)
                stop, tp = self._bracket_levels(args, sym, side, ref)
                o = Order(
                    manual_order_id(self.spec.name, sym, row.seq),
                    sym,
                    side,
                    typ,
                    float(args["amount"]),
                    price=price,
                    created_ms=self.now_ms(),
                    updated_ms=self.now_ms(),
                    tag="manual",
                )
                before = self.brackets.get(sym)
                if before is not None and before.get("entry") == o.client_order_id:  # handled again
                    before = before.get("replaces")
                prior = None if before is None else {k: v for k, v in before.items() if k != "replaces"}
                known = self.orders.orders.get(o.client_order_id)
                if (stop is not None or tp is not None) and (
                    known is None or known.status is OrderStatus.INITIALIZED
                ):
                    # journalled before the entry is sent: a fill (even one seen only after a crash) finds it
                    self._set_bracket(sym, "pending", stop=stop, take_profit=tp, entry=o.client_order_id,
                                      command_seq=row.seq, armed_ms=None, reason=None, order=None, replaces=prior)  # fmt: skip
                r = await self._submit(o, ref_price=None)
                ok = r.status is not OrderStatus.DENIED
                if (stop is not None or tp is not None) and r.filled <= 0 and not r.status.is_open:
                    if before is not None:  # the entry was refused: the levels the position had stay
                        keep = {k: v for k, v in before.items() if k not in ("symbol", "status", "replaces")}
                        keep["replaces"] = None
                        self._set_bracket(sym, before["status"], **keep)
                    else:
                        self._set_bracket(sym, "canceled", reason=f"the entry {r.status.value}, unfilled")
                msg = f"order {r.client_order_id}: {r.status.value}" + (f" ({r.reason})" if r.reason else "")
                if ok and (stop is not None or tp is not None):
                    msg += " with " + ", ".join(
                        f"{n} {v:g}" for n, v in (("stop", stop), ("take-profit", tp)) if v is not None
                    )
                extra = {"order": r.client_order_id, "stop": stop, "take_profit": tp}
            elif name == "stop":
                msg = "stopping"
                self.stopping.set()
            else:
                raise EngineError(f"unknown command {name!r}")
        except (EngineError, OrderRejected, KeyError, ValueError) as e:
            ok, msg = False, str(e)
        self._save_state()
        self.journal.ack(cid, ok, msg, **extra)
        self.journal.meta_set("commands_seq", self._cmd_seq)

    def status(self) -> dict[str, Any]:
        assert self.orders is not None
        prices = dict(self.prices)
        return {
            "session": self.spec.name,
            "mode": self.spec.mode,
            "strategy": self.spec.strategy,
            "symbols": list(self.spec.symbols),
            "risk_state": self.risk.state.value,
            "paused": self.paused,
            "equity": self._equity(),
            "cash": self.portfolio.balances.get(self.opt.quote, 0.0),
            "positions": {s: self.portfolio.position(s).amount for s in self.portfolio.symbols},
            "prices": prices,
            "open_orders": [o.client_order_id for o in self.orders.open_orders()],
            "brackets": {
                s: {k: b.get(k) for k in ("status", "stop", "take_profit", "entry")}
                for s, b in self.brackets.items()
            },
            "last_bar": self.adapter.last_bar,
            "events": self.events,
        }

    # ------------------------------------------------------------------ the loop

    async def _timer(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(0.5)
            await self.queue.put(("timer", None, None))

    def _risk_events(self, events: list) -> None:
        assert self.journal is not None
        for e in events:
            self.journal.record_risk(e.ts_ms, e.event, e.reason, **e.extra())
            if e.is_state_change:
                self.journal.record_state(e.ts_ms, "RISK", e.reason, risk=self.risk.state.value)
        if events:
            self._save_state()

    async def _on_stale(self, symbol: str, quiet_s: float) -> None:
        """No update from a feed for ``stale_s`` seconds of wall time (the feed's watchdog): REDUCING until every
        feed updates again. (The exchange's clock may stand still too, as a paused replay's does, so this is
        measured on the local clock.)"""
        assert self.journal is not None
        self.journal.record_risk(self.now_ms(), "stale_feed", f"{symbol}: no update for {quiet_s:.1f} s")
        self._stale.add(symbol)
        if self.risk.state is RiskState.ACTIVE:
            self._risk_events(
                self.risk.reduce(f"stale feed: {symbol} silent for {quiet_s:.1f} s", ts_ms=self.now_ms())
            )
            self._reduced_for_stale = True

    async def _on_fresh(self, symbol: str) -> None:
        assert self.journal is not None
        self._stale.discard(symbol)
        self.journal.record_risk(self.now_ms(), "feed_resumed", f"{symbol}: updates again")
        if not self._stale and self._reduced_for_stale and self.risk.state is RiskState.REDUCING:
            self._reduced_for_stale = False
            self._risk_events(self.risk.resume("every feed updates again", ts_ms=self.now_ms()))

    async def _on_timer(self) -> None:
        assert self.journal is not None
        now = self.now_ms()
        for e in self.risk.on_timer(now) if hasattr(self.risk, "on_timer") else []:
            self.journal.record_risk(e.ts_ms, e.event, e.reason, **e.extra())
            if e.is_state_change:
                self.journal.record_state(e.ts_ms, "RISK", e.reason, risk=self.risk.state.value)
                self._save_state()
        await self._flatten_tick()
        # a candle whose end is past the exchange clock (plus a grace) and that no later candle closed yet
        for s, tr in self.trackers.items():
            cur = tr.open_candle()
            if cur is not None and cur.ts + self.tf.ms + self.opt.close_grace_ms <= now:
                rows = await fetch_closed_candles(self.client, s, self.spec.timeframe, cur.ts, now)
                await self._on_candles(s, rows)
        if self.spec.mode == "live" and self.orders is not None and self.orders.open_orders():
            await self._poll_orders()

    async def _poll_orders(self) -> None:
        """Live: orders whose outcome is unknown asked again, working ones polled (no user-data stream), fills
        synced. A venue that cannot answer now is asked again on the next tick."""
        assert self.orders is not None
        await self.orders.resolve_pending()
        try:
            for o in self.orders.open_orders():
                if o.status is not OrderStatus.SUBMITTED:
                    venue = await self.broker.fetch_order(o)
                    if venue is not None:
                        await self.orders.on_order_update(venue)
            await self._sync_fills()
        except BrokerError as e:
            assert self.journal is not None
            self.journal.log("warning", f"order poll failed ({e}); trying again")

    async def _sync_fills(self) -> None:
        assert self.journal is not None
        since = self.journal.last_fill_ts()
        for s in self.spec.symbols:
            for f in await self.broker.fetch_fills(s, None if since is None else since - 60_000):
                self._book_fill(f)

    async def _guarded(self, what: str, work: Any) -> bool:
        """Await ``work``; a transient venue error (REST timeout, 5xx, dropped connection, rate limit) is logged
        and ``False`` returned: the event's work is tried again (the next candle event re-detects a gap, the
        next tick polls again, a reconnect is queued again) instead of killing the session."""
        assert self.journal is not None
        try:
            await work
        except (BrokerError, *TRANSIENT_ERRORS) as e:
            self.journal.log("warning", f"{what}: {type(e).__name__}: {str(e)[:300]}; trying again")
            return False
        return True

    def _again(self, kind: str, symbol: str | None, payload: Any, delay_s: float = 1.0) -> None:
        """Queue an event again after ``delay_s`` (its work failed on a transient venue error; a paused replay
        sends no new event that would retry it)."""
        asyncio.get_running_loop().call_later(delay_s, self.queue.put_nowait, (kind, symbol, payload))

    async def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Run until ``stop`` (a command, Ctrl-C) or ``until()`` is true. ``start()`` must have been called."""
        assert self.journal is not None
        feed = MarketFeed(self.client, self.spec.symbols, self.spec.timeframe, self.queue, book=self.opt.book,
                          stale_s=self.opt.stale_s, log=self.log)  # fmt: skip
        feed.start()
        tasks = [asyncio.create_task(self._commands()), asyncio.create_task(self._timer())]
        get = self.queue.get_nowait
        try:
            while not self.stopping.is_set():
                try:
                    # the common case, an event already waiting, without wait_for's task and timer per event
                    kind, symbol, payload = get()
                except asyncio.QueueEmpty:
                    try:
                        kind, symbol, payload = await asyncio.wait_for(self.queue.get(), timeout=0.5)
                    except TimeoutError:
                        if until is not None and until():
                            break
                        continue
                else:
                    if self.events % 256 == 255:
                        await asyncio.sleep(0)  # a backlog still lets the feeds, timer and commands run
                self.events += 1
                if kind == "candles":
                    if not await self._guarded(kind, self._on_candles(symbol, payload)):
                        self._again(kind, symbol, payload)  # its back-fill failed: the same rows again soon
                elif kind == "book":
                    bid = payload["bids"][0][0] if payload["bids"] else None
                    ask = payload["asks"][0][0] if payload["asks"] else None
                    if hasattr(self.broker, "on_price"):
                        self.broker.on_price(symbol, bid=bid, ask=ask)
                    t = time.monotonic()
                    if t - self._last_book.get(symbol, -math.inf) >= self.opt.snapshot_every_s:
                        # a snapshot about once a second per symbol, not one journal write per book update
                        self._last_book[symbol] = t
                        self.journal.record_book(self.now_ms(), symbol, payload["bids"], payload["asks"])
                elif kind == "reconnected":
                    self.journal.log("warning", f"{symbol}: feed reconnected; back-filling and reconciling")
                    if not (
                        await self._guarded(kind, self._backfill())
                        and await self._guarded(kind, self._reconcile("reconnect"))
                    ):
                        self._again(kind, symbol, None)
                elif kind == "stale":
                    await self._on_stale(symbol, payload)
                elif kind == "fresh":
                    await self._on_fresh(symbol)
                elif kind == "timer":
                    await self._guarded(kind, self._on_timer())
                elif kind == "command":
                    await self._handle_command(payload)
                if until is not None and until():
                    break
        finally:
            await feed.stop()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t


def split_amount(total: float, cap: float, step: float | None = None, min_amount: float = 0.0) -> list[float]:
    """``total`` (a multiple of ``step``) as the fewest child amounts each at most ``cap``: the children are as
    equal as the lot ``step`` allows (the first ones ``ceil(total / n)`` steps, the last the remainder, never
    more than the others), so the last is not a sliver below ``min_amount`` (units are moved to it from the
    others where it would be). The amounts add up to ``total`` exactly in decimal (each is a whole number of
    steps). ``cap`` below one step (or not positive): ``[total]`` (the checks then refuse it, saying why)."""
    if total <= 0:
        return []
    if not cap > 0 or cap >= total:
        return [float(total)]
    if step is None:
        n = math.ceil(total / (cap * (1 - 1e-12)))
        base = total / n
        return [base] * (n - 1) + [total - base * (n - 1)]
    d = Decimal(repr(float(step)))
    units = int((Decimal(repr(float(total))) / d + Decimal("1e-9")).to_integral_value(rounding=ROUND_FLOOR))
    cap_units = int((Decimal(repr(float(cap))) / d).to_integral_value(rounding=ROUND_FLOOR))
    while cap_units > 0 and float(cap_units * d) > cap:
        cap_units -= 1
    if cap_units <= 0 or units <= cap_units:
        return [float(units * d)] if units > 0 else [float(total)]
    n = -(-units // cap_units)
    base = -(-units // n)
    kids = [base] * (n - 1) + [units - base * (n - 1)]
    lo = (
        int((Decimal(repr(float(min_amount))) / d).to_integral_value(rounding=ROUND_CEILING))
        if min_amount
        else 0
    )
    if kids[-1] < lo <= cap_units:
        for i in range(n - 1):
            take = min(lo - kids[-1], kids[i] - lo)
            if take > 0:
                kids[i] -= take
                kids[-1] += take
    return [float(k * d) for k in kids]


def dumps(d: Any) -> str:
    return json.dumps(d, indent=1, default=str, allow_nan=False)
