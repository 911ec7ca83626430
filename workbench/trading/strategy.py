"""The engine's strategy interface (event-driven) and the adapter that runs candle ``target()`` strategies on it.

An :class:`EventStrategy` reacts to market events (closed bars, trades, book updates, its own fills, timers) and
asks for orders through the :class:`StrategyContext` the engine gives it. Quoting strategies (the roadmap's market
makers) implement it directly; the research half's :class:`~workbench.strategies.base.Strategy` (a ``target()``
per bar) runs through :class:`CandleAdapter`, which does exactly what the backtest does:

* it keeps, per symbol, a rolling buffer of the last ``warmup`` **closed** candles (:class:`CandleTracker` decides
  when a candle is closed: once a later candle is seen, or once the exchange clock is past its end; the
  still-open candle is never used, and a candle is acted on once);
* when bar ``t`` has closed for every symbol of the session, it evaluates ``target()`` on the buffers and, where
  the target changed since the last decision (the backtest sends an order only then), trades the strategy's
  sub-position to ``target × size_share × V / open`` at the open of bar ``t+1`` — ``V`` the equity at that open,
  ``size_share = size / n_symbols`` for single-asset strategies, as in ``run_backtest`` — sells before buys;
* the target is clipped to the direction (``long`` on spot: shorts are refused at session start).

The adapter is pure (no I/O): the engine feeds it candles and the portfolio, and turns its :class:`Intent` list
into orders through the risk manager.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from workbench.strategies.base import Strategy
from workbench.types import CANDLE_COLUMNS, Side, Timeframe

__all__ = [
    "Bar",
    "CandleAdapter",
    "CandleTracker",
    "EventStrategy",
    "Intent",
    "StrategyContext",
    "default_warmup",
]

DEFAULT_WARMUP = 500
"""Closed candles kept for a strategy that does not declare its warm-up."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One candle: ``ts`` is its open time in ms; ``closed`` whether it is final."""

    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool = True


@dataclass(frozen=True, slots=True)
class Intent:
    """What a strategy wants traded: ``amount`` base units on ``side`` of ``symbol``, for bar ``bar_ms``.

    ``ref_price`` is the price the decision was sized at (the open of the bar it executes in); ``target`` the
    strategy's target fraction behind it.
    """

    symbol: str
    side: Side
    amount: float
    ref_price: float
    bar_ms: int
    target: float
    reason: str = "signal"


class StrategyContext(Protocol):
    """What the engine offers a strategy (positions, prices, equity, orders)."""

    def position(self, symbol: str) -> float: ...
    def last_price(self, symbol: str) -> float | None: ...
    def equity(self) -> float: ...
    def submit(self, intent: Intent) -> None: ...


class EventStrategy(Protocol):
    """An event-driven strategy. Every hook is optional in spirit; the engine calls them in event order."""

    name: str

    def on_start(self, ctx: StrategyContext) -> None: ...
    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None: ...
    def on_trade(self, trade: Mapping[str, Any], ctx: StrategyContext) -> None: ...
    def on_book(self, book: Mapping[str, Any], ctx: StrategyContext) -> None: ...
    def on_fill(self, fill: Any, ctx: StrategyContext) -> None: ...
    def on_timer(self, ts_ms: int, ctx: StrategyContext) -> None: ...


def default_warmup(strategy: Strategy) -> int:
    """The strategy's declared warm-up (closed candles its last target needs), else :data:`DEFAULT_WARMUP`."""
    w = getattr(strategy, "warmup", None)
    if callable(w):
        w = w()
    return int(w) if isinstance(w, int | np.integer) and w > 0 else DEFAULT_WARMUP


class CandleTracker:
    """Turns the candle lists a feed delivers (ccxt ``[ts, o, h, l, c, v]`` rows, the last one maybe still open)
    into closed :class:`Bar` objects, each once, in time order.

    ccxt's unified OHLCV has no "closed" flag: a candle is closed once a candle with a later open time is seen,
    or once the exchange clock (``now_ms``) is past its end. The latest values seen for a candle are kept, so a
    candle closed by a later one is emitted with its final update.
    """

    def __init__(self, symbol: str, timeframe: str, last_emitted: int | None = None) -> None:
        self.symbol = symbol
        self.tf = Timeframe.parse(timeframe)
        self.last_emitted = last_emitted  # open time of the last closed candle handed out
        self._pending: dict[int, list[float]] = {}

    def update(self, rows: Sequence[Sequence[float]], now_ms: int | None = None) -> list[Bar]:
        for r in rows:
            ts = int(r[0])
            if self.last_emitted is not None and ts <= self.last_emitted:
                continue
            if ts % self.tf.ms:
                raise ValueError(f"{self.symbol}: candle time {ts} is not on the {self.tf} grid")
            self._pending[ts] = [float(x) for x in r[1:6]]
        return self._emit(now_ms)

    def close_by_clock(self, now_ms: int) -> list[Bar]:
        return self._emit(now_ms)

    def open_candle(self) -> Bar | None:
        """The newest candle seen that is not closed yet (None if none)."""
        if not self._pending:
            return None
        ts = max(self._pending)
        o, h, lo, c, v = self._pending[ts]
        return Bar(self.symbol, ts, o, h, lo, c, v, closed=False)

    def _emit(self, now_ms: int | None) -> list[Bar]:
        if not self._pending:
            return []
        newest = max(self._pending)
        out = []
        for ts in sorted(self._pending):
            closed = ts < newest or (now_ms is not None and ts + self.tf.ms <= now_ms)
            if not closed:
                break
            o, h, lo, c, v = self._pending.pop(ts)
            out.append(Bar(self.symbol, ts, o, h, lo, c, v, closed=True))
            self.last_emitted = ts
        return out


@dataclass
class CandleAdapter:
    """Runs a ``target()`` strategy bar by bar, as the backtest does (see the module docstring)."""

    strategy: Strategy
    symbols: list[str]
    timeframe: str
    size: float = 1.0
    direction: str = "long"
    warmup: int = 0
    last_target: dict[str, float] = field(default_factory=dict)
    last_bar: int | None = None  # open time of the last bar decided on

    def __post_init__(self) -> None:
        if self.direction not in ("long", "short", "both"):
            raise ValueError(f"direction must be long, short or both, not {self.direction!r}")
        if self.strategy.assets not in (1, len(self.symbols)):
            raise ValueError(
                f"strategy {self.strategy.name!r} trades {self.strategy.assets} assets together; "
                f"got {len(self.symbols)} symbols: {', '.join(self.symbols)}"
            )
        self.warmup = self.warmup or default_warmup(self.strategy)
        self.tf = Timeframe.parse(self.timeframe)
        self._buffers: dict[str, deque[Bar]] = {s: deque(maxlen=self.warmup) for s in self.symbols}
        for s in self.symbols:
            self.last_target.setdefault(s, 0.0)

    # ---------------------------------------------------------------- data

    def seed(self, symbol: str, bars: Sequence[Bar]) -> None:
        """Fill the buffer with closed history (back-filled over REST at start) without deciding."""
        buf = self._buffers[symbol]
        for b in bars:
            if b.closed and (not buf or b.ts > buf[-1].ts):
                buf.append(b)

    def add(self, bar: Bar) -> None:
        buf = self._buffers[bar.symbol]
        if buf and bar.ts <= buf[-1].ts:
            return  # never twice
        if buf and bar.ts != buf[-1].ts + self.tf.ms:
            # a gap (missed candles): keep it as it is; the caller back-fills before acting
            pass
        buf.append(bar)

    def ready(self, bar_ms: int) -> bool:
        """Whether bar ``bar_ms`` has closed for every symbol (and was not decided on yet)."""
        if self.last_bar is not None and bar_ms <= self.last_bar:
            return False
        return all(buf and buf[-1].ts >= bar_ms for buf in self._buffers.values())

    def frame(self, symbol: str) -> pd.DataFrame:
        buf = self._buffers[symbol]
        idx = pd.DatetimeIndex(pd.to_datetime([b.ts for b in buf], unit="ms", utc=True), name="time")
        data = {c: [getattr(b, c) for b in buf] for c in CANDLE_COLUMNS}
        df = pd.DataFrame(data, index=idx, dtype="float64")
        df.attrs.update(symbol=symbol, timeframe=self.timeframe)
        return df

    # ---------------------------------------------------------------- decisions

    def targets(self) -> dict[str, float]:
        """The strategy's targets at the last closed bar, clipped to the direction and sized."""
        if self.strategy.assets == 1:
            raw = {s: self.strategy.target(self.frame(s)) for s in self.symbols}
            last = {s: _last(v) for s, v in raw.items()}
            share = self.size / len(self.symbols)
        else:
            out = self.strategy.target({s: self.frame(s) for s in self.symbols})
            row = out.iloc[-1] if isinstance(out, pd.DataFrame) else out
            last = {s: _nan0(float(row[s])) for s in self.symbols}
            share = self.size
        for s, v in last.items():
            if self.direction == "long":
                v = max(v, 0.0)
            elif self.direction == "short":
                v = min(v, 0.0)
            last[s] = v * share
        return last

    def decide(
        self,
        bar_ms: int,
        *,
        positions: Mapping[str, float],
        cash: float,
        opens: Mapping[str, float],
    ) -> list[Intent]:
        """The intents for closed bar ``bar_ms``, executed at the next bar's ``opens``: only for symbols whose
        target changed. ``positions``: the strategy's sub-position per symbol; ``cash``: quote available."""
        if not self.ready(bar_ms):
            return []
        targets = self.targets()
        self.last_bar = bar_ms
        value = cash + sum(positions.get(s, 0.0) * opens[s] for s in self.symbols)
        intents = []
        for s in self.symbols:
            t = targets[s]
            if t == self.last_target.get(s, 0.0):
                continue
            self.last_target[s] = t
            goal = t * value / opens[s]
            d = goal - positions.get(s, 0.0)
            if d == 0.0:
                continue
            intents.append(
                Intent(
                    s,
                    Side.BUY if d > 0 else Side.SELL,
                    abs(d),
                    opens[s],
                    bar_ms + self.tf.ms,
                    t / (self.size or 1),
                )
            )
        intents.sort(key=lambda i: i.side is Side.BUY)  # sells first, as in the backtest
        return intents

    def state(self) -> dict[str, Any]:
        return {"last_bar": self.last_bar, "last_target": dict(self.last_target)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.last_bar = state.get("last_bar")
        self.last_target.update({k: float(v) for k, v in (state.get("last_target") or {}).items()})


def _nan0(x: float) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _last(v: pd.Series | pd.DataFrame) -> float:
    s = v.iloc[:, 0] if isinstance(v, pd.DataFrame) else v
    return _nan0(float(s.iloc[-1])) if len(s) else 0.0
