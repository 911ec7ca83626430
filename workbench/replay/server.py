"""The replay exchange's server: Binance spot REST + websocket on 127.0.0.1 (aiohttp), admin endpoints, faults.

See the package docstring (:mod:`workbench.replay`) for the design; this module is the wire protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd
from aiohttp import WSMsgType, web

from workbench.config import TradingConfig
from workbench.replay.clock import ReplayClock
from workbench.replay.market import BookParams, MarketSeries, fmt
from workbench.replay.venue import ApiError, ReplayOrder, ReplayTrade, Venue
from workbench.types import Timeframe, to_ms

__all__ = ["FAULT_KINDS", "ReplayError", "ReplayExchange", "ccxt_config"]

log = logging.getLogger(__name__)

DAY_MS = 86_400_000

FAULT_KINDS: tuple[str, ...] = (
    "5xx",  # HTTP 503 with an HTML body, request not processed           -> ccxt ExchangeNotAvailable
    "429",  # HTTP 429 + Retry-After, not processed                        -> ccxt DDoSProtection
    "drop",  # connection closed before processing, no answer              -> ccxt NetworkError
    "timeout",  # no answer until the client gives up, not processed       -> ccxt RequestTimeout
    "timeout-after-accept",  # processed (an order is accepted), then no answer -> ccxt RequestTimeout
    "drop-after-accept",  # processed, then the connection is closed       -> ccxt NetworkError
    "1007",  # processed, then -1007 "execution status unknown"            -> ccxt RequestTimeout
)
_PRE_FAULTS = ("5xx", "429", "drop", "timeout")

# the ccxt.binance URL table ('api' entry) as paths; every one is pointed at the replay server
_CCXT_API_PATHS = {
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/futures/data",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "papi": "/papi/v1",
    "papiV2": "/papi/v2",
}
_CCXT_WS_PATHS = {
    "spot": "/ws",
    "margin": "/ws",
    "linear": "/fstream/ws",
    "inverse": "/dstream/ws",
    "stock": "/nbstream/ws",
    "option": "/eoptions/ws",
    "optionMarket": "/eoptions/market/ws",
    "optionPrivate": "/eoptions/private/ws",
    "papi": "/pm/ws",
}
_CCXT_WSAPI_PATHS = {"spot": "/ws-api/v3", "linear": "/ws-fapi/v1", "inverse": "/ws-dapi/v1"}

_STREAM_RE = re.compile(
    r"^(?P<sym>[a-z0-9]+)@(?P<kind>kline_[0-9]+[smhdwM]|trade|aggTrade|depth(?:5|10|20)?(?:@(?:100|1000)ms)?"
    r"|bookTicker|ticker|miniTicker)$"
)


class ReplayError(ValueError):
    """A setup problem of the replay exchange (data, symbols, start time, options); the message names it."""


@dataclass
class _Fault:
    kind: str
    path: str | None
    method: str | None
    times: int


@dataclass
class _Stream:
    name: str
    market: MarketSeries
    kind: str
    last_ms: int = -1
    last_uid: int = -1
    last_closed: int = 0
    last_top: tuple | None = None


@dataclass(eq=False)
class _WsConn:
    ws: web.WebSocketResponse
    request: web.Request
    combined: bool
    streams: dict[str, _Stream] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class ReplayExchange:
    """Recorded candles served as a live Binance spot exchange on 127.0.0.1, with a replay clock.

    ``data``: a :class:`workbench.data.store.Store` (candles are read for ``exchange``/``symbols``/``timeframe``)
    or a mapping ``symbol -> candles frame`` (a store Candles frame, or a frame with an epoch-ms ``timestamp``
    column). ``start``: the replay time to begin at (ISO string, datetime or epoch ms; default 200 bars after
    the latest first candle). ``speed``: replay ms per wall ms (0 = the clock only moves by :meth:`advance`).
    Fees and slippage default to ``trading`` (``config/trading.yml``: ``fees.maker``, ``fees.taker``,
    ``slippage_bps``); balances to ``{quote_currency: initial_cash}``. Recorded trades and order-book
    snapshots (store ``trades``/``orderbook`` series, or the ``trades``/``books`` mappings in the store's
    layout) are served where they exist, unless ``recorded=False``.
    """

    def __init__(
        self,
        data: Any,
        symbols: Sequence[str] | None = None,
        timeframe: str = "5m",
        start: object = None,
        speed: float = 1.0,
        *,
        exchange: str = "binance",
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        secret: str | None = None,
        balances: Mapping[str, float] | None = None,
        trading: TradingConfig | None = None,
        maker_fee: float | None = None,
        taker_fee: float | None = None,
        slippage_bps: float | None = None,
        min_notional: float = 5.0,
        book: BookParams | None = None,
        trades_per_bar: int = 60,
        state_path: str | Path | None = None,
        fault_rate: float = 0.0,
        faults: Sequence[str] = (),
        fault_seed: int = 0,
        timeout_fault_s: float = 12.0,
        recv_window_max_ms: int = 60_000,
        trades: Mapping[str, pd.DataFrame] | None = None,
        books: Mapping[str, pd.DataFrame] | None = None,
        recorded: bool = True,
        book_hold_ms: int = 60_000,
    ):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ReplayError(
                f"replay exchange: serves on loopback only (its admin API is unauthenticated), got {host!r}"
            )
        trading = trading or TradingConfig()
        tf = Timeframe.parse(timeframe)
        self.timeframe = tf.value
        self.exchange = exchange
        frames = self._load(data, symbols, tf.value, exchange)
        self.markets: dict[str, MarketSeries] = {}
        for sym, df in frames.items():
            try:
                m = MarketSeries(sym, tf.ms, df, trades_per_bar=trades_per_bar)
            except ValueError as exc:
                raise ReplayError(str(exc)) from exc
            if recorded:
                rec_trades, rec_books = self._recorded(data, sym, exchange, trades, books)
                try:
                    m.set_recorded(rec_trades, rec_books, hold_ms=book_hold_ms)
                except (ValueError, KeyError) as exc:
                    raise ReplayError(f"replay exchange: recorded data for {sym}: {exc}") from exc
            self.markets[m.id] = m
        if not self.markets:
            raise ReplayError("replay exchange: no symbols to serve")
        self.symbols = [m.symbol for m in self.markets.values()]
        first = max(m.first_ms for m in self.markets.values())
        end = min(m.end_ms for m in self.markets.values())
        if start is None:
            start_ms = min(first + 200 * tf.ms, end - tf.ms)
        else:
            try:
                start_ms = to_ms(start, what="start")
            except ValueError as exc:
                raise ReplayError(f"replay exchange: bad --start {start!r}: {exc}") from exc
        if not first <= start_ms < end:
            raise ReplayError(
                f"replay exchange: start {_iso(start_ms)} is outside the data of {', '.join(self.symbols)} "
                f"({_iso(first)} .. {_iso(end)})"
            )
        if speed < 0:
            raise ReplayError(f"replay exchange: speed must be >= 0, got {speed}")
        for f in faults:
            if f not in FAULT_KINDS:
                raise ReplayError(f"replay exchange: unknown fault {f!r}; known: {', '.join(FAULT_KINDS)}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ReplayError(f"replay exchange: fault rate must be in [0, 1], got {fault_rate}")
        if fault_rate > 0 and not faults:
            raise ReplayError("replay exchange: a fault rate needs the faults to draw from (--faults)")

        if balances is None:
            balances = {trading.quote_currency: trading.initial_cash}
        try:
            self.venue = Venue(
                self.markets,
                dict(balances),
                maker_fee=trading.fees.maker if maker_fee is None else maker_fee,
                taker_fee=trading.fees.taker if taker_fee is None else taker_fee,
                slippage=(trading.slippage_bps if slippage_bps is None else slippage_bps) / 1e4,
                min_notional=min_notional,
                state_path=state_path,
            )
            restored = self.venue.load()
        except ValueError as exc:
            raise ReplayError(str(exc)) from exc
        self.restored = restored
        if restored and self.venue.clock_ms is not None:
            start_ms = max(start_ms, min(self.venue.clock_ms, end))
        keys = self.venue.keys or {}
        self.api_key = api_key or keys.get("api_key") or secrets.token_hex(32)
        self.secret = secret or keys.get("secret") or secrets.token_hex(32)
        self.venue.keys = {"api_key": self.api_key, "secret": self.secret}

        self.clock = ReplayClock(start_ms, speed, end_ms=end, running=False)
        self.start_ms = start_ms
        self.book = book or BookParams()
        self.host, self.port = host, int(port)
        self.fault_rate, self.fault_kinds = float(fault_rate), tuple(faults)
        self._rng = random.Random(fault_seed)
        self.timeout_fault_s = float(timeout_fault_s)
        self.recv_window_max_ms = int(recv_window_max_ms)
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        # (method, path) of the latest REST requests, for tests and the status page; bounded
        self.requests: deque[tuple[str, str]] = deque(maxlen=10_000)
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: set[_WsConn] = set()
        self._tasks: set[asyncio.Task] = set()
        self._thread: threading.Thread | None = None
        self._last_saved_clock = -1
        self.clock.on_change(self._notify)
        with self._lock:
            self._save()

    # ------------------------------------------------------------------ data
    @staticmethod
    def _load(
        data: Any, symbols: Sequence[str] | None, timeframe: str, exchange: str
    ) -> dict[str, pd.DataFrame]:
        from workbench.data.store import Store, StoreError

        if isinstance(data, Store):
            if not symbols:
                symbols = sorted(
                    k.symbol
                    for k in data.series("candles")
                    if k.exchange == exchange and k.timeframe == timeframe
                )
                if not symbols:
                    raise ReplayError(f"replay exchange: no {exchange} {timeframe} candles in the store")
            try:
                return {s: data.candles(exchange, s, timeframe) for s in symbols}
            except StoreError as exc:
                raise ReplayError(f"replay exchange: {exc}") from exc
        if isinstance(data, Mapping):
            frames = {str(k): v for k, v in data.items()}
            if symbols:
                missing = [s for s in symbols if s not in frames]
                if missing:
                    raise ReplayError(f"replay exchange: no candles given for {', '.join(missing)}")
                frames = {s: frames[s] for s in symbols}
            return frames
        raise ReplayError(
            f"replay exchange: data must be a Store or a mapping symbol -> candles, got {type(data)}"
        )

    @staticmethod
    def _recorded(
        data: Any,
        symbol: str,
        exchange: str,
        trades: Mapping[str, pd.DataFrame] | None,
        books: Mapping[str, pd.DataFrame] | None,
    ) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        """Recorded trades and order-book snapshots of ``symbol``: given, or from the store when it has them."""
        from workbench.data.store import Store

        t = (trades or {}).get(symbol)
        b = (books or {}).get(symbol)
        if isinstance(data, Store):
            if t is None and data.manifest(data.key("trades", exchange, symbol)) is not None:
                t = data.read_table(data.key("trades", exchange, symbol)).to_pandas()
            if b is None and data.manifest(data.key("orderbook", exchange, symbol)) is not None:
                b = data.read_table(data.key("orderbook", exchange, symbol)).to_pandas()
        return t, b

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        """Serve on ``host:port`` (0: a free port) in the running event loop; returns the port."""
        self._loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.base_url = f"http://{self.host}:{self.port}"
        self.clock.begin()
        self._spawn(self._ticker())
        return self.port

    async def stop(self) -> None:
        """Close every websocket and stop serving. Idempotent."""
        for t in list(self._tasks):
            t.cancel()
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        with self._lock:
            self._save(force=True)

    def serve_in_thread(self) -> ReplayExchange:
        """Start serving from a daemon thread with its own event loop; returns self once listening."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        error: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                error.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(self.stop())
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                with contextlib.suppress(Exception):
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="replay-exchange", daemon=True)
        self._thread.start()
        ready.wait(60)
        if error:
            self._thread = None
            raise error[0]
        if not self.base_url:
            raise ReplayError("replay exchange: did not start within 60 s")
        return self

    def close_thread(self) -> None:
        """Stop the server started by :meth:`serve_in_thread` and join its thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[ReplayExchange]:
        """``with ReplayExchange(...).run_in_thread() as ex:`` serve from a background thread."""
        self.serve_in_thread()
        try:
            yield self
        finally:
            self.close_thread()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ client configuration
    @property
    def ws_url(self) -> str:
        return "ws://" + self.base_url.split("://", 1)[1] + "/ws"

    def ccxt_config(self, *, timeout_ms: int = 10_000, keys: bool = True) -> dict[str, Any]:
        """Constructor options for ``ccxt.binance`` / ``ccxt.async_support.binance`` / ``ccxt.pro.binance``
        that point every URL at this server (with the test keys unless ``keys=False``)."""
        if not self.base_url:
            raise ReplayError("replay exchange: start() it before asking for its ccxt config")
        if keys:
            return ccxt_config(self.base_url, self.api_key, self.secret, timeout_ms=timeout_ms)
        return ccxt_config(self.base_url, timeout_ms=timeout_ms)

    # ------------------------------------------------------------------ control (thread-safe)
    def now_ms(self) -> int:
        return self.clock.now()

    def pause(self) -> None:
        self.clock.pause()

    def resume(self) -> None:
        self.clock.resume()

    def set_speed(self, speed: float) -> None:
        self.clock.set_speed(speed)

    def advance(self, ms: int) -> int:
        """Move the replay clock forward by ``ms``; resting orders the path touched are filled at once."""
        t = self.clock.advance(ms)
        with self._lock:
            self._sync()
        return t

    def inject(
        self, fault: str, *, path: str | None = None, method: str | None = None, times: int = 1
    ) -> None:
        """Queue ``fault`` for the next ``times`` REST requests matching ``path`` (e.g. '/api/v3/order') and
        ``method`` (e.g. 'POST'); None matches any."""
        if fault not in FAULT_KINDS:
            raise ReplayError(f"replay exchange: unknown fault {fault!r}; known: {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(_Fault(fault, path, method.upper() if method else None, int(times)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def drop_websockets(self) -> int:
        """Close every websocket connection abruptly (no close frame); returns how many were open."""
        conns = list(self._conns)
        loop = self._loop
        if loop is None:
            return 0

        def drop() -> None:
            for c in conns:
                if c.request.transport is not None:
                    c.request.transport.abort()

        loop.call_soon_threadsafe(drop)
        return len(conns)

    def balances(self) -> dict[str, dict[str, float]]:
        with self._lock:
            self._sync()
            return {
                a: {"free": self.venue.free[a], "locked": self.venue.locked.get(a, 0.0)}
                for a in self.venue.free
            }

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "now_ms": self.clock.now(),
                "now": _iso(self.clock.now()),
                "speed": self.clock.speed,
                "paused": self.clock.paused,
                "finished": self.clock.finished,
                "end_ms": self.clock.end_ms,
                "symbols": self.symbols,
                "timeframe": self.timeframe,
                "faults_queued": [f.__dict__ for f in self._faults],
                "fault_rate": self.fault_rate,
                "websockets": len(self._conns),
                "streams": sorted({n for c in list(self._conns) for n in list(c.streams)}),
                "open_orders": len(self.venue.open_orders()),
            }

    def _notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def wake() -> None:
            for c in list(self._conns):
                c.wake.set()

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake)

    # ------------------------------------------------------------------ state
    def _sync(self) -> None:
        """Bring matching up to the clock (caller holds the lock)."""
        now = self.clock.now()
        if self.venue.match(now):
            self._save()

    def _save(self, force: bool = False) -> None:
        now = self.clock.now()
        self.venue.save(now)
        self._last_saved_clock = now

    async def _ticker(self) -> None:
        """Matches resting orders as the clock runs, and saves the clock about once a second."""
        last_save = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            try:
                with self._lock:
                    self._sync()
                    if (
                        self.venue.state_path is not None
                        and time.monotonic() - last_save > 1.0
                        and self.clock.now() != self._last_saved_clock
                    ):
                        self._save()
                        last_save = time.monotonic()
            except Exception:  # never let the ticker die
                log.exception("replay exchange: matching failed")

    # ------------------------------------------------------------------ faults
    def _take_fault(self, method: str, path: str) -> str | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if (f.path is None or f.path == path) and (f.method is None or f.method == method):
                    f.times -= 1
                    if f.times <= 0:
                        del self._faults[i]
                    return f.kind
            if self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.fault_kinds)
        return None

    # ------------------------------------------------------------------ dispatch
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_replay/"):
            return await self._admin(request)
        is_ws_path = (
            path == "/ws" or path.startswith("/ws/") or path == "/stream" or path.startswith("/stream/")
        )
        if is_ws_path and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        method = request.method
        try:
            body = await request.text() if method in ("POST", "PUT", "DELETE") else ""
        except Exception:
            return _error(400, -1100, "Illegal characters found in the request body.")
        with self._lock:
            self.requests.append((method, path))
        fault = self._take_fault(method, path) if path.startswith("/api/") else None
        if fault in _PRE_FAULTS:
            return await self._pre_fault(request, fault)
        try:
            payload = self._handle(request, method, path, body)
            response: web.StreamResponse = web.Response(
                text=json.dumps(payload, separators=(",", ":")), content_type="application/json"
            )
        except ApiError as exc:
            response = _error(exc.status, exc.code, exc.msg)
        except Exception:
            log.exception("replay exchange: %s %s failed", method, path)
            response = _error(500, -1000, "An unknown error occurred while processing the request.")
        if fault == "1007":
            return _error(
                500,
                -1007,
                "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
            )
        if fault == "timeout-after-accept":
            await asyncio.sleep(self.timeout_fault_s)
            fault = "drop-after-accept"
        if fault == "drop-after-accept":
            _abort(request)
            raise asyncio.CancelledError()
        return response

    async def _pre_fault(self, request: web.Request, fault: str) -> web.StreamResponse:
        if fault == "5xx":
            html = "<html><body><h1>503 Service Unavailable</h1></body></html>"
            return web.Response(status=503, text=html, content_type="text/html")
        if fault == "429":
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "1"})
        if fault == "timeout":
            await asyncio.sleep(self.timeout_fault_s)
        _abort(request)
        raise asyncio.CancelledError()

    def _handle(self, request: web.Request, method: str, path: str, body: str) -> Any:
        route = _ROUTES.get(path)
        if route is None:
            raise ApiError(404, -1, f"replay exchange: no route for {method} {path}")
        handler = route.get(method)
        if handler is None:
            raise ApiError(405, -1, f"replay exchange: {method} is not allowed on {path}")
        fn, signed = handler
        raw_query = request.raw_path.partition("?")[2]
        params: dict[str, str] = {}
        try:
            for source in (raw_query, body):
                params.update(parse_qsl(source, keep_blank_values=True, strict_parsing=False))
        except ValueError as exc:
            raise ApiError(400, -1100, f"Illegal characters found in a parameter: {exc}") from exc
        with self._lock:
            if signed:
                self._authenticate(request, params, raw_query, body)
            self._sync()
            out = fn(self, params)
            if signed and method in ("POST", "DELETE"):
                self._save()
            return out

    def _authenticate(self, request: web.Request, params: dict[str, str], raw_query: str, body: str) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise ApiError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, self.api_key):
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        sig = params.get("signature")
        if not sig:
            raise ApiError(
                400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        total = _strip_signature(raw_query) + _strip_signature(body)
        expected = hmac.new(self.secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig.lower()):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        ts = _int(params, "timestamp")
        if ts is None:
            raise ApiError(
                400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            )
        window = _int(params, "recvWindow", 5000)
        assert window is not None
        if window <= 0 or window > self.recv_window_max_ms:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        refs = (int(time.time() * 1000), self.clock.now())
        if not any(ts <= ref + 1000 and ref - ts <= window for ref in refs):
            if all(ts > ref + 1000 for ref in refs):
                raise ApiError(
                    400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
                )
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    # ------------------------------------------------------------------ admin
    async def _admin(self, request: web.Request) -> web.StreamResponse:
        if request.remote not in ("127.0.0.1", "::1", None):
            return _error(403, -1, "replay exchange: the admin API answers loopback only")
        path = request.path
        try:
            body: dict[str, Any] = {}
            if request.method in ("POST", "PUT") and request.can_read_body:
                raw = await request.text()
                body = json.loads(raw) if raw.strip() else {}
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
            if path == "/_replay/status" and request.method == "GET":
                return web.json_response(self.status())
            if path == "/_replay/clock" and request.method == "POST":
                if body.get("pause"):
                    self.pause()
                if body.get("resume"):
                    self.resume()
                if "speed" in body:
                    self.set_speed(float(body["speed"]))
                if "advance_ms" in body:
                    self.advance(int(body["advance_ms"]))
                if "to_ms" in body:
                    self.clock.set(int(body["to_ms"]))
                    with self._lock:
                        self._sync()
                return web.json_response(self.status())
            if path == "/_replay/faults" and request.method == "POST":
                self.inject(
                    str(body.get("fault")),
                    path=body.get("path"),
                    method=body.get("method"),
                    times=int(body.get("times", 1)),
                )
                return web.json_response(self.status())
            if path == "/_replay/faults" and request.method == "DELETE":
                self.clear_faults()
                return web.json_response(self.status())
            if path == "/_replay/ws/drop" and request.method == "POST":
                return web.json_response({"dropped": self.drop_websockets()})
            if path == "/_replay/balances" and request.method == "GET":
                return web.json_response(self.balances())
        except (ValueError, TypeError, ReplayError) as exc:
            return _error(400, -1, f"replay exchange admin: {exc}")
        return _error(404, -1, f"replay exchange admin: no route for {request.method} {path}")

    # ------------------------------------------------------------------ public REST
    def _market(self, params: dict[str, str], required: bool = True) -> MarketSeries | None:
        mid = params.get("symbol")
        if mid is None:
            if required:
                raise ApiError(
                    400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
                )
            return None
        m = self.markets.get(mid.upper())
        if m is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return m

    def _r_ping(self, params: dict[str, str]) -> Any:
        return {}

    def _r_time(self, params: dict[str, str]) -> Any:
        return {"serverTime": self.clock.now()}

    def _r_exchange_info(self, params: dict[str, str]) -> Any:
        markets = list(self.markets.values())
        wanted: list[str] | None = None
        if "symbol" in params:
            wanted = [params["symbol"]]
        elif "symbols" in params:
            try:
                wanted = [str(s) for s in json.loads(params["symbols"])]
            except (ValueError, TypeError) as exc:
                raise ApiError(400, -1100, "Illegal characters found in parameter 'symbols'.") from exc
        if wanted is not None:
            if any(w not in self.markets for w in wanted):
                raise ApiError(400, -1121, "Invalid symbol.")
            markets = [self.markets[w] for w in wanted]
        return {
            "timezone": "UTC",
            "serverTime": self.clock.now(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(m) for m in markets],
        }

    def _symbol_info(self, m: MarketSeries) -> dict[str, Any]:
        tick, step = fmt(m.tick), fmt(m.step)
        return {
            "symbol": m.id,
            "status": "TRADING",
            "baseAsset": m.base,
            "baseAssetPrecision": 8,
            "quoteAsset": m.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "amendAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": tick,
                    "maxPrice": "1000000.00000000",
                    "tickSize": tick,
                },
                {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00000000", "stepSize": step},
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": "0.00000000",
                    "maxQty": "9000.00000000",
                    "stepSize": "0.00000000",
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": fmt(self.venue.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": ["SPOT"],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "NONE",
            "allowedSelfTradePreventionModes": ["NONE"],
        }

    def _kline_row(self, m: MarketSeries, i: int, now: int) -> list[Any]:
        o, h, lo, c, v = m.partial(i, now)
        typical = (h + lo + c) / 3.0
        last_id = m.last_trade_id(min(now, int(m.ends[i]) - 1))
        first_id = i * m.trades_per_bar + 1
        return [
            int(m.ts[i]),
            fmt(o),
            fmt(h),
            fmt(lo),
            fmt(c),
            fmt(v),
            int(m.ends[i]) - 1,
            fmt(v * typical),
            max(0, last_id - first_id + 1),
            fmt(v * 0.5),
            fmt(v * 0.5 * typical),
            "0",
        ]

    def _r_klines(self, params: dict[str, str]) -> Any:
        m = self._market(params)
        assert m is not None
        interval = params.get("interval")
        if interval is None:
            raise ApiError(
                400, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
            )
        if interval != self.timeframe:
            raise ApiError(400, -1120, f"Invalid interval: this replay serves {self.timeframe} candles only.")
        limit = _limit(params, 500, 1000)
        start, end = _int(params, "startTime"), _int(params, "endTime")
        if start is not None and end is not None and start > end:
            raise ApiError(400, -1023, "Start time is greater than end time.")
        now = self.clock.now()
        visible = int(np.searchsorted(m.ts, now, side="right"))  # candles opened at or before now
        lo = int(np.searchsorted(m.ts, start, side="left")) if start is not None else 0
        hi = min(int(np.searchsorted(m.ts, end, side="right")) if end is not None else len(m.ts), visible)
        if lo >= hi:
            return []
        idx = range(lo, min(hi, lo + limit)) if start is not None else range(max(lo, hi - limit), hi)
        return [self._kline_row(m, i, now) for i in idx]

    def _trade_objs(self, m: MarketSeries, trades: list[dict], agg: bool) -> list[dict]:
        if agg:
            return [
                {
                    "a": t["id"],
                    "p": fmt(t["price"]),
                    "q": fmt(t["qty"]),
                    "f": t["id"],
                    "l": t["id"],
                    "T": t["time"],
                    "m": t["buyer_maker"],
                    "M": True,
                }
                for t in trades
            ]
        return [
            {
                "id": t["id"],
                "price": fmt(t["price"]),
                "qty": fmt(t["qty"]),
                "quoteQty": fmt(t["price"] * t["qty"]),
                "time": t["time"],
                "isBuyerMaker": t["buyer_maker"],
                "isBestMatch": True,
            }
            for t in trades
        ]

    def _r_agg_trades(self, params: dict[str, str]) -> Any:
        m = self._market(params)
        assert m is not None
        limit = _limit(params, 500, 1000)
        from_id, start, end = _int(params, "fromId"), _int(params, "startTime"), _int(params, "endTime")
        if start is not None and end is not None and start > end:
            raise ApiError(400, -1023, "Start time is greater than end time.")
        now = self.clock.now()
        upto = now if end is None else min(now, end)
        if from_id is not None:
            t_from = m.trade_time(from_id)
            if t_from is None:
                return []
            since = max(t_from, start) if start is not None else t_from
            trades = m.trades(since - 1, upto, limit + 64, oldest=True)
            trades = [t for t in trades if t["time"] > t_from or t["id"] >= from_id][:limit]
        elif start is not None:
            trades = m.trades(start - 1, upto, limit, oldest=True)
        else:
            trades = m.trades(upto - DAY_MS, upto, limit)
        return self._trade_objs(m, trades, agg=True)

    def _r_trades(self, params: dict[str, str]) -> Any:
        m = self._market(params)
        assert m is not None
        now = self.clock.now()
        return self._trade_objs(m, m.trades(now - DAY_MS, now, _limit(params, 500, 1000)), agg=False)

    def _depth(self, m: MarketSeries, limit: int) -> dict[str, Any]:
        uid = self.clock.now() // self.book.step_ms
        bids, asks = m.book(uid, self.book)
        return {
            "lastUpdateId": uid,
            "bids": [[fmt(p), fmt(q)] for p, q in bids[:limit]],
            "asks": [[fmt(p), fmt(q)] for p, q in asks[:limit]],
        }

    def _r_depth(self, params: dict[str, str]) -> Any:
        m = self._market(params)
        assert m is not None
        return self._depth(m, _limit(params, 100, 5000))

    def _stats(self, m: MarketSeries, now: int) -> dict[str, Any]:
        """24 h statistics at ``now`` from the candles (the open one as formed)."""
        n_open = int(np.searchsorted(m.ts, now, side="right"))
        first = int(np.searchsorted(m.ts, now - DAY_MS, side="left"))
        rows = [m.partial(i, now) for i in range(first, n_open)] if n_open > first else []
        last = m.price(now) or 0.0
        if rows:
            o = rows[0][0]
            h = max(r[1] for r in rows)
            lo = min(r[2] for r in rows)
            vol = sum(r[4] for r in rows)
            qvol = sum(r[4] * (r[1] + r[2] + r[3]) / 3 for r in rows)
        else:
            o = h = lo = last
            vol = qvol = 0.0
        bids, asks = m.book(now // self.book.step_ms, self.book)
        first_id = m.first_trade_id_from(now - DAY_MS)
        last_id = m.last_trade_id(now)
        last_trade = m.trades(now - DAY_MS, now, 1)
        return {
            "symbol": m.id,
            "priceChange": fmt(last - o),
            "priceChangePercent": f"{(100 * (last - o) / o) if o else 0.0:.3f}",
            "weightedAvgPrice": fmt(qvol / vol if vol else last),
            "prevClosePrice": fmt(m.c[first - 1] if first > 0 else o),
            "lastPrice": fmt(last),
            "lastQty": fmt(last_trade[0]["qty"] if last_trade else 0.0),
            "bidPrice": fmt(bids[0][0] if bids else last),
            "bidQty": fmt(bids[0][1] if bids else 0.0),
            "askPrice": fmt(asks[0][0] if asks else last),
            "askQty": fmt(asks[0][1] if asks else 0.0),
            "openPrice": fmt(o),
            "highPrice": fmt(h),
            "lowPrice": fmt(lo),
            "volume": fmt(vol),
            "quoteVolume": fmt(qvol),
            "openTime": max(m.first_ms, now - DAY_MS),
            "closeTime": now,
            "firstId": first_id if last_id else -1,
            "lastId": last_id if last_id else -1,
            "count": max(0, last_id - first_id + 1) if last_id else 0,
        }

    def _r_ticker_24hr(self, params: dict[str, str]) -> Any:
        now = self.clock.now()
        if "symbol" in params:
            m = self._market(params)
            assert m is not None
            return self._stats(m, now)
        if "symbols" in params:
            try:
                ids = [str(s) for s in json.loads(params["symbols"])]
            except (ValueError, TypeError) as exc:
                raise ApiError(400, -1100, "Illegal characters found in parameter 'symbols'.") from exc
            if any(i not in self.markets for i in ids):
                raise ApiError(400, -1121, "Invalid symbol.")
            return [self._stats(self.markets[i], now) for i in ids]
        return [self._stats(m, now) for m in self.markets.values()]

    def _book_ticker(self, m: MarketSeries) -> dict[str, Any]:
        d = self._depth(m, 1)
        bid, ask = (d["bids"] or [["0", "0"]])[0], (d["asks"] or [["0", "0"]])[0]
        return {"symbol": m.id, "bidPrice": bid[0], "bidQty": bid[1], "askPrice": ask[0], "askQty": ask[1]}

    def _r_book_ticker(self, params: dict[str, str]) -> Any:
        m = self._market(params, required=False)
        if m is not None:
            return self._book_ticker(m)
        return [self._book_ticker(x) for x in self.markets.values()]

    def _r_ticker_price(self, params: dict[str, str]) -> Any:
        now = self.clock.now()
        m = self._market(params, required=False)
        ms = [m] if m is not None else list(self.markets.values())
        out = [{"symbol": x.id, "price": fmt(x.price(now) or 0.0)} for x in ms]
        return out[0] if m is not None else out

    # ------------------------------------------------------------------ private REST
    def _order_obj(self, o: ReplayOrder) -> dict[str, Any]:
        return {
            "symbol": o.symbol,
            "orderId": o.orderId,
            "orderListId": -1,
            "clientOrderId": o.clientOrderId,
            "price": fmt(o.price),
            "origQty": fmt(o.origQty),
            "executedQty": fmt(o.executedQty),
            "cummulativeQuoteQty": fmt(o.cummulativeQuoteQty),
            "status": o.status,
            "timeInForce": o.timeInForce,
            "type": o.type,
            "side": o.side,
            "stopPrice": "0.00000000",
            "icebergQty": "0.00000000",
            "time": o.time,
            "updateTime": o.updateTime,
            "isWorking": o.status in ("NEW", "PARTIALLY_FILLED"),
            "workingTime": o.time,
            "origQuoteOrderQty": fmt(o.origQuoteOrderQty),
            "selfTradePreventionMode": "NONE",
        }

    def _trades_of(self, o: ReplayOrder) -> list[ReplayTrade]:
        ids = set(o.fills)
        return [t for t in self.venue.trades if t.id in ids]

    def _r_account(self, params: dict[str, str]) -> Any:
        v = self.venue
        balances = [
            {"asset": a, "free": fmt(v.free[a]), "locked": fmt(v.locked.get(a, 0.0))} for a in sorted(v.free)
        ]
        if params.get("omitZeroBalances") == "true":
            balances = [b for b in balances if float(b["free"]) or float(b["locked"])]
        return {
            "makerCommission": round(v.maker_fee * 1e4),
            "takerCommission": round(v.taker_fee * 1e4),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": fmt(v.maker_fee),
                "taker": fmt(v.taker_fee),
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.clock.now(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        }

    def _r_order_post(self, params: dict[str, str]) -> Any:
        m = self._market(params)
        assert m is not None
        side = params.get("side", "").upper()
        if side not in ("BUY", "SELL"):
            raise ApiError(
                400, -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed."
            )
        otype = params.get("type", "").upper()
        if otype not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
            if otype in ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"):
                raise ApiError(400, -1013, f"replay exchange: order type {otype} is not supported.")
            raise ApiError(400, -1116, "Invalid orderType.")
        order = self.venue.place(
            self.clock.now(),
            symbol=m.id,
            side=side,
            type=otype,
            quantity=_float(params, "quantity"),
            price=_float(params, "price"),
            time_in_force=params.get("timeInForce"),
            client_id=params.get("newClientOrderId"),
            quote_qty=_float(params, "quoteOrderQty"),
        )
        resp_type = params.get("newOrderRespType", "FULL").upper()
        if resp_type == "ACK":
            return {
                "symbol": order.symbol,
                "orderId": order.orderId,
                "orderListId": -1,
                "clientOrderId": order.clientOrderId,
                "transactTime": order.time,
            }
        out = self._order_obj(order)
        out["transactTime"] = order.time
        for k in ("stopPrice", "icebergQty", "time", "updateTime", "isWorking"):
            out.pop(k)
        if resp_type == "FULL":
            out["fills"] = [
                {
                    "price": fmt(t.price),
                    "qty": fmt(t.qty),
                    "commission": fmt(t.commission),
                    "commissionAsset": t.commissionAsset,
                    "tradeId": t.id,
                }
                for t in self._trades_of(order)
            ]
        return out

    def _lookup(self, params: dict[str, str], missing_code: int, missing_msg: str) -> ReplayOrder:
        m = self._market(params)
        assert m is not None
        oid = _int(params, "orderId")
        cid = params.get("origClientOrderId")
        if oid is None and not cid:
            raise ApiError(
                400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        o = self.venue.find(m.id, oid, cid)
        if o is None:
            raise ApiError(400, missing_code, missing_msg)
        return o

    def _r_order_get(self, params: dict[str, str]) -> Any:
        return self._order_obj(self._lookup(params, -2013, "Order does not exist."))

    def _r_order_delete(self, params: dict[str, str]) -> Any:
        o = self._lookup(params, -2011, "Unknown order sent.")
        self.venue.cancel(o, self.clock.now())
        return self._cancel_obj(o, params.get("newClientOrderId"))

    def _cancel_obj(self, o: ReplayOrder, new_cid: str | None) -> dict[str, Any]:
        out = self._order_obj(o)
        out["origClientOrderId"] = o.clientOrderId
        out["clientOrderId"] = new_cid or f"cancel{o.orderId:08d}"
        out["transactTime"] = o.updateTime
        for k in (
            "stopPrice",
            "icebergQty",
            "time",
            "updateTime",
            "isWorking",
            "workingTime",
            "origQuoteOrderQty",
        ):
            out.pop(k)
        return out

    def _r_open_orders(self, params: dict[str, str]) -> Any:
        m = self._market(params, required=False)
        return [self._order_obj(o) for o in self.venue.open_orders(m.id if m else None)]

    def _r_open_orders_delete(self, params: dict[str, str]) -> Any:
        m = self._market(params)
        assert m is not None
        now = self.clock.now()
        return [self._cancel_obj(self.venue.cancel(o, now), None) for o in self.venue.open_orders(m.id)]

    def _window(self, params: dict[str, str], rows: list[Any], id_attr: str, id_param: str) -> list[Any]:
        start, end = _int(params, "startTime"), _int(params, "endTime")
        from_id = _int(params, id_param)
        limit = _limit(params, 500, 1000)
        t_attr = "time"
        out = [
            r
            for r in rows
            if (start is None or getattr(r, t_attr) >= start)
            and (end is None or getattr(r, t_attr) <= end)
            and (from_id is None or getattr(r, id_attr) >= from_id)
        ]
        return out[:limit] if (start is not None or from_id is not None) else out[-limit:]

    def _r_all_orders(self, params: dict[str, str]) -> Any:
        m = self._market(params)
        assert m is not None
        rows = [o for o in self.venue.orders if o.symbol == m.id]
        return [self._order_obj(o) for o in self._window(params, rows, "orderId", "orderId")]

    def _r_my_trades(self, params: dict[str, str]) -> Any:
        m = self._market(params)
        assert m is not None
        rows = [t for t in self.venue.trades if t.symbol == m.id]
        oid = _int(params, "orderId")
        if oid is not None:
            rows = [t for t in rows if t.orderId == oid]
        return [
            {
                "symbol": t.symbol,
                "id": t.id,
                "orderId": t.orderId,
                "orderListId": -1,
                "price": fmt(t.price),
                "qty": fmt(t.qty),
                "quoteQty": fmt(t.quoteQty),
                "commission": fmt(t.commission),
                "commissionAsset": t.commissionAsset,
                "time": t.time,
                "isBuyer": t.side == "BUY",
                "isMaker": t.isMaker,
                "isBestMatch": True,
            }
            for t in self._window(params, rows, "id", "fromId")
        ]

    # ------------------------------------------------------------------ websocket
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        combined = request.path.startswith("/stream")
        conn = _WsConn(ws, request, combined)
        names: list[str] = []
        if combined and request.query.get("streams"):
            names = request.query["streams"].split("/")
        elif request.path.startswith("/ws/") and "@" in request.path:
            names = [request.path[len("/ws/") :]]
        for n in names:
            with contextlib.suppress(ApiError):
                self._subscribe(conn, n)
        self._conns.add(conn)
        pusher = asyncio.ensure_future(self._push_loop(conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._ws_command(conn, msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        except Exception:  # a misbehaving client never takes the server down
            log.debug("replay exchange: websocket error", exc_info=True)
        finally:
            pusher.cancel()
            self._conns.discard(conn)
        return ws

    async def _ws_command(self, conn: _WsConn, text: str) -> None:
        try:
            msg = json.loads(text)
            if not isinstance(msg, dict):
                raise ValueError
        except ValueError:
            await conn.ws.send_json({"error": {"code": 3, "msg": "Invalid JSON: expected an object"}})
            return
        rid = msg.get("id")
        method = msg.get("method")
        params = msg.get("params") or []
        try:
            if method == "SUBSCRIBE":
                for n in params:
                    self._subscribe(conn, str(n))
                await conn.ws.send_json({"result": None, "id": rid})
                self._notify()
            elif method == "UNSUBSCRIBE":
                for n in params:
                    conn.streams.pop(str(n), None)
                await conn.ws.send_json({"result": None, "id": rid})
            elif method == "LIST_SUBSCRIPTIONS":
                await conn.ws.send_json({"result": list(conn.streams), "id": rid})
            else:
                await conn.ws.send_json(
                    {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid}
                )
        except ApiError as exc:
            await conn.ws.send_json({"error": {"code": 2, "msg": exc.msg}, "id": rid})

    def _subscribe(self, conn: _WsConn, name: str) -> None:
        mt = _STREAM_RE.match(name)
        if mt is None:
            raise ApiError(400, 2, f"Invalid request: unknown stream {name!r}")
        m = self.markets.get(mt.group("sym").upper())
        if m is None:
            raise ApiError(400, 2, f"Invalid request: unknown symbol in stream {name!r}")
        kind = mt.group("kind")
        if kind.startswith("kline_") and kind[len("kline_") :] != self.timeframe:
            raise ApiError(400, 2, f"Invalid request: this replay serves {self.timeframe} klines only")
        now = self.clock.now()
        conn.streams[name] = _Stream(
            name,
            m,
            kind,
            last_ms=-1 if kind in ("ticker", "miniTicker") else now,
            last_uid=now // self.book.step_ms,
            last_closed=m.n_closed(now),
        )

    async def _push_loop(self, conn: _WsConn) -> None:
        first = True
        while not conn.ws.closed:
            if not first:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(conn.wake.wait(), 0.1)
                conn.wake.clear()
            first = False
            try:
                events = self._events(conn)
            except Exception:
                log.exception("replay exchange: building stream events failed")
                events = []
            for name, ev in events:
                try:
                    await conn.ws.send_json({"stream": name, "data": ev} if conn.combined else ev)
                except (ConnectionResetError, RuntimeError):
                    return

    def _events(self, conn: _WsConn) -> list[tuple[str, Any]]:
        now = self.clock.now()
        out: list[tuple[str, Any]] = []
        for s in list(conn.streams.values()):
            m = s.market
            if s.kind.startswith("kline_"):
                closed = m.n_closed(now)
                for i in range(max(s.last_closed, closed - 1000), closed):
                    out.append((s.name, self._kline_event(m, i, now, closed=True)))
                s.last_closed = closed
                j = m.bar_at(now)
                if j is not None and (now != s.last_ms or s.last_top is None):
                    out.append((s.name, self._kline_event(m, j, now, closed=False)))
                    s.last_top = (j,)
                s.last_ms = now
            elif s.kind in ("trade", "aggTrade"):
                if now > s.last_ms:
                    for t in m.trades(s.last_ms, now, 1000):
                        out.append((s.name, self._trade_event(m, t, now, agg=s.kind == "aggTrade")))
                    s.last_ms = now
            elif s.kind.startswith("depth"):
                uid = now // self.book.step_ms
                partial = s.kind[len("depth") :].split("@")[0]
                if partial:
                    if uid != s.last_uid or s.last_top is None:
                        d = self._depth(m, int(partial))
                        out.append((s.name, d))
                        s.last_top = (uid,)
                elif uid > s.last_uid:
                    out.append((s.name, self._depth_event(m, s.last_uid, uid, now)))
                s.last_uid = uid
            elif s.kind == "bookTicker":
                uid = now // self.book.step_ms
                bids, asks = m.book(uid, self.book)
                top = (bids[0] if bids else None, asks[0] if asks else None)
                if top != s.last_top and bids and asks:
                    out.append(
                        (
                            s.name,
                            {
                                "u": uid,
                                "s": m.id,
                                "b": fmt(bids[0][0]),
                                "B": fmt(bids[0][1]),
                                "a": fmt(asks[0][0]),
                                "A": fmt(asks[0][1]),
                            },
                        )
                    )
                    s.last_top = top
            elif s.kind in ("ticker", "miniTicker") and now != s.last_ms:
                out.append((s.name, self._ticker_event(m, now, mini=s.kind == "miniTicker")))
                s.last_ms = now
        return out

    def _kline_event(self, m: MarketSeries, i: int, now: int, *, closed: bool) -> dict[str, Any]:
        row = self._kline_row(m, i, max(now, int(m.ends[i])) if closed else now)
        first_id = i * m.trades_per_bar + 1
        return {
            "e": "kline",
            "E": now,
            "s": m.id,
            "k": {
                "t": row[0],
                "T": row[6],
                "s": m.id,
                "i": self.timeframe,
                "f": first_id,
                "L": first_id + row[8] - 1,
                "o": row[1],
                "c": row[4],
                "h": row[2],
                "l": row[3],
                "v": row[5],
                "n": row[8],
                "x": closed,
                "q": row[7],
                "V": row[9],
                "Q": row[10],
                "B": "0",
            },
        }

    def _trade_event(self, m: MarketSeries, t: dict, now: int, *, agg: bool) -> dict[str, Any]:
        if agg:
            return {
                "e": "aggTrade",
                "E": now,
                "s": m.id,
                "a": t["id"],
                "p": fmt(t["price"]),
                "q": fmt(t["qty"]),
                "f": t["id"],
                "l": t["id"],
                "T": t["time"],
                "m": t["buyer_maker"],
                "M": True,
            }
        return {
            "e": "trade",
            "E": now,
            "s": m.id,
            "t": t["id"],
            "p": fmt(t["price"]),
            "q": fmt(t["qty"]),
            "T": t["time"],
            "m": t["buyer_maker"],
            "M": True,
        }

    def _depth_event(self, m: MarketSeries, uid_from: int, uid_to: int, now: int) -> dict[str, Any]:
        old_b, old_a = m.book(uid_from, self.book)
        new_b, new_a = m.book(uid_to, self.book)
        return {
            "e": "depthUpdate",
            "E": now,
            "s": m.id,
            "U": uid_from + 1,
            "u": uid_to,
            "b": _diff(old_b, new_b),
            "a": _diff(old_a, new_a),
        }

    def _ticker_event(self, m: MarketSeries, now: int, *, mini: bool) -> dict[str, Any]:
        st = self._stats(m, now)
        ev = {
            "e": "24hrMiniTicker" if mini else "24hrTicker",
            "E": now,
            "s": m.id,
            "c": st["lastPrice"],
            "o": st["openPrice"],
            "h": st["highPrice"],
            "l": st["lowPrice"],
            "v": st["volume"],
            "q": st["quoteVolume"],
        }
        if not mini:
            ev.update(
                {
                    "p": st["priceChange"],
                    "P": st["priceChangePercent"],
                    "w": st["weightedAvgPrice"],
                    "x": st["prevClosePrice"],
                    "Q": st["lastQty"],
                    "b": st["bidPrice"],
                    "B": st["bidQty"],
                    "a": st["askPrice"],
                    "A": st["askQty"],
                    "O": st["openTime"],
                    "C": st["closeTime"],
                    "F": st["firstId"],
                    "L": st["lastId"],
                    "n": st["count"],
                }
            )
        return ev


Handler = Callable[[ReplayExchange, dict[str, str]], Any]
_ROUTES: dict[str, dict[str, tuple[Handler, bool]]] = {
    "/api/v3/ping": {"GET": (ReplayExchange._r_ping, False)},
    "/api/v3/time": {"GET": (ReplayExchange._r_time, False)},
    "/api/v3/exchangeInfo": {"GET": (ReplayExchange._r_exchange_info, False)},
    "/api/v3/klines": {"GET": (ReplayExchange._r_klines, False)},
    "/api/v3/uiKlines": {"GET": (ReplayExchange._r_klines, False)},
    "/api/v3/aggTrades": {"GET": (ReplayExchange._r_agg_trades, False)},
    "/api/v3/trades": {"GET": (ReplayExchange._r_trades, False)},
    "/api/v3/depth": {"GET": (ReplayExchange._r_depth, False)},
    "/api/v3/ticker/24hr": {"GET": (ReplayExchange._r_ticker_24hr, False)},
    "/api/v3/ticker/bookTicker": {"GET": (ReplayExchange._r_book_ticker, False)},
    "/api/v3/ticker/price": {"GET": (ReplayExchange._r_ticker_price, False)},
    "/api/v3/account": {"GET": (ReplayExchange._r_account, True)},
    "/api/v3/order": {
        "POST": (ReplayExchange._r_order_post, True),
        "GET": (ReplayExchange._r_order_get, True),
        "DELETE": (ReplayExchange._r_order_delete, True),
    },
    "/api/v3/openOrders": {
        "GET": (ReplayExchange._r_open_orders, True),
        "DELETE": (ReplayExchange._r_open_orders_delete, True),
    },
    "/api/v3/allOrders": {"GET": (ReplayExchange._r_all_orders, True)},
    "/api/v3/myTrades": {"GET": (ReplayExchange._r_my_trades, True)},
}


# ---------------------------------------------------------------------- helpers


def ccxt_config(
    base_url: str, api_key: str | None = None, secret: str | None = None, *, timeout_ms: int = 10_000
) -> dict[str, Any]:
    """Constructor options for ``ccxt.binance`` (sync, async or pro) that point every URL of its tables at the
    replay exchange at ``base_url`` (e.g. ``http://127.0.0.1:8765``, as ``workbench replay-exchange`` prints),
    with rate limiting off and spot-only market loading (one ``exchangeInfo`` call)."""
    base_url = base_url.rstrip("/")
    ws_base = "ws://" + base_url.split("://", 1)[1]
    api: dict[str, Any] = {k: base_url + p for k, p in _CCXT_API_PATHS.items()}
    api["ws"] = {k: ws_base + p for k, p in _CCXT_WS_PATHS.items()}
    api["ws"]["ws-api"] = {k: ws_base + p for k, p in _CCXT_WSAPI_PATHS.items()}
    cfg: dict[str, Any] = {
        "urls": {"api": api, "test": api, "demo": api},
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "adjustForTimeDifference": False,
            "warnOnFetchOpenOrdersWithoutSymbol": False,
        },
        "enableRateLimit": False,
        "timeout": int(timeout_ms),
    }
    if api_key is not None:
        cfg["apiKey"] = api_key
    if secret is not None:
        cfg["secret"] = secret
    return cfg


def _iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def _strip_signature(s: str) -> str:
    return re.sub(r"(^|&)signature=[^&]*", "", s)


def _int(params: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise ApiError(
            400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return int(raw)


def _float(params: Mapping[str, str], name: str) -> float | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"[0-9]{1,20}(\.[0-9]{1,20})?", raw):
        raise ApiError(
            400,
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.",
        )
    return float(raw)


def _limit(params: Mapping[str, str], default: int, maximum: int) -> int:
    limit = _int(params, "limit", default)
    assert limit is not None
    if limit <= 0:
        raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return min(limit, maximum)


def _diff(old: list[tuple[float, float]], new: list[tuple[float, float]]) -> list[list[str]]:
    """Levels that changed from ``old`` to ``new`` (absolute quantities; 0 removes a level)."""
    o, n = dict(old), dict(new)
    out = [[fmt(p), fmt(q)] for p, q in new if o.get(p) != q]
    out += [[fmt(p), "0.00000000"] for p in o if p not in n]
    return out
