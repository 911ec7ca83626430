"""Market data for a session: ccxt.pro websocket streams with reconnect, REST back-fill and stale detection.

:class:`MarketFeed` runs one task per stream and puts events on the engine's queue, in arrival order:

* ``("candles", symbol, rows)`` from ``watch_ohlcv`` (ccxt rows ``[ts, o, h, l, c, v]``, the last one maybe still
  open; :class:`~workbench.trading.strategy.CandleTracker` decides what is closed);
* ``("book", symbol, book)`` from ``watch_order_book`` (best bid/ask and the top levels), when asked for;
* ``("reconnected", symbol, None)`` after a stream came back from an error: the engine back-fills the closed
  candles it missed over REST (``fetch_ohlcv``) and reconciles before it acts again;
* ``("stale", symbol, seconds)`` when a symbol had no update for ``stale_s`` (the risk manager goes REDUCING)
  and ``("fresh", symbol, None)`` when updates resume.

A stream that fails (``ccxt.NetworkError``: a dropped socket, a 5xx, a timeout) is called again after an
exponential backoff with jitter (``backoff_s`` doubling up to ``backoff_max_s``); ccxt.pro reconnects on the next
call. Where an exchange has no websocket OHLCV, candles are polled over REST every ``poll_s`` seconds instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import ccxt

__all__ = ["TRANSIENT_ERRORS", "MarketFeed", "fetch_closed_candles"]

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ccxt.NetworkError, ccxt.BadResponse, OSError)
"""Errors of a market-data REST call that are worth trying again later (a timeout, a 5xx, a dropped
connection, a rate limit, Binance -1007): the engine logs them and carries on instead of dying; ccxt stays
imported here, not in the engine."""


async def fetch_closed_candles(
    client: Any, symbol: str, timeframe: str, since_ms: int, now_ms: int, limit: int = 1000
) -> list[list[float]]:
    """Closed candles from ``since_ms`` up to the exchange clock ``now_ms``, over REST, paging forward.

    The still-open candle (its end after ``now_ms``) is dropped."""
    tf_ms = int(client.parse_timeframe(timeframe) * 1000)
    out: list[list[float]] = []
    cursor = since_ms
    while cursor + tf_ms <= now_ms:
        rows = await client.fetch_ohlcv(symbol, timeframe, since=cursor, limit=limit)
        rows = [r for r in rows if r[0] >= cursor and r[0] + tf_ms <= now_ms]
        if not rows:
            break
        out.extend(rows)
        cursor = int(rows[-1][0]) + tf_ms
    return out


class MarketFeed:
    def __init__(
        self,
        client: Any,
        symbols: Sequence[str],
        timeframe: str,
        queue: asyncio.Queue,
        *,
        book: bool = False,
        book_depth: int = 10,
        stale_s: float = 60.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        poll_s: float = 5.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self.queue = queue
        self.book = book
        self.book_depth = book_depth
        self.stale_s = stale_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.poll_s = poll_s
        self.log = log or (lambda msg: None)
        self.last_update: dict[str, float] = {s: time.monotonic() for s in self.symbols}
        self.stale: set[str] = set()
        self.reconnects = 0
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        ws = bool(self.client.has.get("watchOHLCV"))
        for s in self.symbols:
            self._tasks.append(
                asyncio.create_task(self._candles(s) if ws else self._poll(s), name=f"ohlcv {s}")
            )
            if self.book and self.client.has.get("watchOrderBook"):
                self._tasks.append(asyncio.create_task(self._books(s), name=f"book {s}"))
        self._tasks.append(asyncio.create_task(self._watchdog(), name="stale watchdog"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    async def _put(self, event: tuple) -> None:
        sym = event[1]
        self.last_update[sym] = time.monotonic()
        if sym in self.stale:
            self.stale.discard(sym)
            await self.queue.put(("fresh", sym, None))
        await self.queue.put(event)

    async def _retrying(self, symbol: str, what: str, step: Callable[[], Any]) -> None:
        delay = self.backoff_s
        failed = False
        while True:
            try:
                result = await step()
            except asyncio.CancelledError:
                raise
            except (ccxt.NetworkError, ccxt.ExchangeError, OSError) as e:
                failed = True
                self.log(f"{what} {symbol}: {type(e).__name__}: {str(e)[:200]}; retrying in {delay:.1f} s")
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.backoff_max_s)
                continue
            if failed:
                failed = False
                delay = self.backoff_s
                self.reconnects += 1
                await self.queue.put(("reconnected", symbol, None))
            if result is not None:
                await self._put(result)

    async def _candles(self, symbol: str) -> None:
        async def step() -> tuple:
            rows = await self.client.watch_ohlcv(symbol, self.timeframe)
            return ("candles", symbol, [list(r) for r in rows[-50:]])

        await self._retrying(symbol, "watch_ohlcv", step)

    async def _books(self, symbol: str) -> None:
        async def step() -> tuple:
            ob = await self.client.watch_order_book(symbol, self.book_depth)
            top = {
                "bids": [list(x[:2]) for x in ob["bids"][: self.book_depth]],
                "asks": [list(x[:2]) for x in ob["asks"][: self.book_depth]],
                "timestamp": ob.get("timestamp"),
            }
            return ("book", symbol, top)

        await self._retrying(symbol, "watch_order_book", step)

    async def _poll(self, symbol: str) -> None:
        async def step() -> tuple:
            await asyncio.sleep(self.poll_s)
            rows = await self.client.fetch_ohlcv(symbol, self.timeframe, limit=3)
            return ("candles", symbol, [list(r) for r in rows])

        await self._retrying(symbol, "fetch_ohlcv", step)

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.stale_s / 4))
            now = time.monotonic()
            for s in self.symbols:
                quiet = now - self.last_update[s]
                if quiet >= self.stale_s and s not in self.stale:
                    self.stale.add(s)
                    await self.queue.put(("stale", s, quiet))
