"""A fake Binance REST server (aiohttp) on 127.0.0.1, for testing with the real ``ccxt.binance`` client.

Usage in a test::

    from fake_binance import FakeBinance

    with FakeBinance(candles={("BTC/USDT", "1h"): df}) as fake:
        ex = ccxt.binance(fake.ccxt_config())
        ex.load_markets()                      # one GET /api/v3/exchangeInfo
        rows = ex.fetch_ohlcv("BTC/USDT", "1h", since=..., limit=500)

The server runs its own event loop in a daemon thread, so plain synchronous tests (and subprocesses
pointed at ``base_url``) can use it. Everything is served from the data handed to the constructor;
nothing leaves the machine: ``ccxt_config()`` rewrites every URL of ``ccxt.binance`` / ``ccxt.pro.binance``
(REST and websocket, live, testnet and demo tables) to this server, so a stray call gets a local 404
and shows up in ``requests``.

Time: ``server_time_ms`` is the simulated "now". Nothing with a timestamp after it is ever served:
klines only return candles that are closed at ``server_time_ms`` (open + timeframe <= now), plus
the still-open candle when ``open_candle=True``; aggTrades and fundingRate stop at now.

Fault injection (``inject``), and the ccxt 4.5 exception each one produces with ``ccxt.binance`` (sync),
as asserted by tests/test_fake_binance.py:

=====================  ==============================================================  =======================
fault                  what the server does                                            ccxt exception (exact)
=====================  ==============================================================  =======================
http_429               HTTP 429, text body, Retry-After: 1                             DDoSProtection
http_418               HTTP 418, text body, Retry-After: 1                             DDoSProtection
rate_limit_1003        HTTP 429, JSON {"code": -1003, "msg": "Too many requests..."}   DDoSProtection [1]
rate_limit_1003_400    HTTP 400, JSON {"code": -1003, ...} (extra)                     RateLimitExceeded
http_500/502/503       HTTP 5xx, text/html body                                        ExchangeNotAvailable
http_504               HTTP 504, text/html body                                        RequestTimeout
timeout                sleeps ``timeout_fault_s`` (default 2.5 s), then answers        RequestTimeout [2]
malformed_json         HTTP 200, application/json, body cut in half                    none! see [3]
disconnect             closes the TCP connection without an answer (extra)             NetworkError [5]
duplicate_candles      list answers (klines, aggTrades, fundingRate) repeat rows       none: duplicates reach
                                                                                       the caller [4]
out_of_order           list answers are shuffled                                       none [4]
=====================  ==============================================================  =======================

[1] ccxt's binance.handle_errors raises DDoSProtection for any 418/429 before it looks at the body, and in
    ccxt 4.5 RateLimitExceeded is *not* a subclass of DDoSProtection (both derive from NetworkError). Only a
    -1003 body with another status gives RateLimitExceeded. Catch NetworkError (or both) to retry.
[2] ``timeout_fault_s`` must exceed the client's ``timeout``; ``ccxt_config()`` uses 2000 ms.
[3] ccxt 4.5 does NOT raise on a truncated JSON body with status 200: Exchange.parse_json swallows
    the ValueError and the raw text goes to the method's parser. Observed: fetch_ohlcv -> [] (a silent
    empty page), fetch_order_book -> empty bids/asks, fetch_time -> None, fetch_trades -> one garbage
    trade (all fields None) per character of the body. A collector must catch these itself.
[4] duplicate_candles repeats the first, middle and last row of the page in place (up to 3 extra rows);
    out_of_order shuffles the page deterministically (seeded by its length; reversed if unchanged).
    fetch_ohlcv and fetch_trades sort by timestamp, so ``out_of_order`` is invisible through ccxt (ties
    in aggTrades keep the shuffled order); ``duplicate_candles`` comes through as repeated rows, and a
    page may then be cut at ``limit`` rows by ccxt's own filter.
[5] ccxt.async_support differs: aiohttp silently retries a request once when the server drops a
    reused keep-alive connection, so one ``disconnect`` is invisible (two requests in ``requests``);
    two in a row give ExchangeNotAvailable. Its ``malformed_json`` result also differs: rows of
    garbage ([9, None, None, None, None, None]) instead of []. The other faults map as above.

Errors that are *not* faults (the real Binance answers): unknown symbol -> 400 {"code": -1121}
(ccxt BadSymbol; ccxt raises BadSymbol itself, without a request, for a symbol absent from
exchangeInfo); bad interval -> 400 {"code": -1120} (BadRequest); aggTrades window > 1 h -> 400
{"code": -1127} (BadRequest); a bad number -> 400 {"code": -1100} (BadRequest); unknown path or
method -> 404 JSON {"code": -1, "msg": ...} (ExchangeError, not retryable).
Caveat: binance.get_exceptions_by_url only recognises https://api.binance.com-style hosts, so against
loopback ccxt uses its common error-code table only; codes mapped solely in its per-market tables
(e.g. -1023 "Start time is greater than end time." -> BadRequest in production) come out as ExchangeError.

Run as a script for manual use::

    python tests/fake_binance.py --sample data/sample/binance --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from aiohttp import web

__all__ = [
    "FAULTS",
    "INTERVAL_MS",
    "FakeBinance",
    "book_from_csv",
    "load_sample",
    "synthetic_funding",
    "trades_from_csv",
]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# Binance spot intervals. '1M' is calendar-based (None); the others have a fixed length.
INTERVAL_MS: dict[str, int | None] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": 7 * DAY_MS,
    "1M": None,
}

FAULTS = (
    "http_429",
    "http_418",
    "rate_limit_1003",
    "rate_limit_1003_400",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "timeout",
    "malformed_json",
    "disconnect",
    "duplicate_candles",
    "out_of_order",
)

_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY", "DAI")


class _ApiError(Exception):
    """A Binance-style error answer: HTTP status + {"code", "msg"}."""

    def __init__(self, status: int, code: int, msg: str):
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg


def _fmt(x: float) -> str:
    """Binance-style decimal string ('42283.58000000') that still round-trips to exactly ``x``."""
    x = float(x)
    s = f"{x:.8f}"
    if float(s) == x:
        return s
    return repr(x)


def _split_unified(symbol: str) -> tuple[str, str, str | None]:
    """'BTC/USDT' -> ('BTC', 'USDT', None); 'BTC/USDT:USDT' -> ('BTC', 'USDT', 'USDT')."""
    settle = None
    pair = symbol
    if ":" in symbol:
        pair, settle = symbol.split(":", 1)
    if "/" not in pair:
        raise ValueError(f"not a unified symbol: {symbol!r} (expected 'BASE/QUOTE' or 'BASE/QUOTE:SETTLE')")
    base, quote = pair.split("/", 1)
    return base, quote, settle


def _split_id(market_id: str) -> tuple[str, str]:
    """'BTCUSDT' -> ('BTC', 'USDT') using common quote assets."""
    for q in _QUOTES:
        if market_id.endswith(q) and len(market_id) > len(q):
            return market_id[: -len(q)], q
    raise ValueError(f"cannot split market id {market_id!r} into base/quote")


def _decimals(values: np.ndarray, cap: int = 8) -> int:
    """Number of decimals needed to write all of ``values`` (sampled), at most ``cap``."""
    vals = np.asarray(values, dtype=float)
    vals = vals[np.isfinite(vals)]
    if len(vals) > 2000:
        vals = vals[:: max(1, len(vals) // 2000)]
    for d in range(cap + 1):
        if np.all(np.abs(np.round(vals, d) - vals) <= 1e-10 + 1e-14 * np.abs(vals)):
            return d
    return cap


class _Candles:
    """One (market, interval) series as numpy arrays, sorted by open time."""

    def __init__(self, df: pd.DataFrame, interval: str):
        if interval not in INTERVAL_MS:
            raise ValueError(f"unknown Binance interval {interval!r}")
        missing = {"timestamp", "open", "high", "low", "close", "volume"} - set(df.columns)
        if missing:
            raise ValueError(f"candles need columns {sorted(missing)}")
        df = df.sort_values("timestamp").drop_duplicates("timestamp", keep="last")
        self.interval = interval
        self.ts = df["timestamp"].to_numpy(dtype=np.int64)
        self.o = df["open"].to_numpy(dtype=float)
        self.h = df["high"].to_numpy(dtype=float)
        self.l = df["low"].to_numpy(dtype=float)
        self.c = df["close"].to_numpy(dtype=float)
        self.v = df["volume"].to_numpy(dtype=float)
        step = INTERVAL_MS[interval]
        if step is None:  # calendar month
            starts = pd.DatetimeIndex(pd.to_datetime(self.ts, unit="ms", utc=True))
            nxt = starts + pd.offsets.MonthBegin(1)
            self.ends = np.asarray(nxt.as_unit("ms").asi8, dtype=np.int64)
        else:
            self.ends = self.ts + step

    def __len__(self) -> int:
        return len(self.ts)

    def n_closed(self, now: int) -> int:
        """How many leading candles are closed at ``now`` (end <= now)."""
        return int(np.searchsorted(self.ends, now, side="right"))

    def open_index(self, now: int) -> int | None:
        """Index of the candle that is still open at ``now`` (open <= now < end), if the data has one."""
        i = self.n_closed(now)
        if i < len(self.ts) and self.ts[i] <= now < self.ends[i]:
            return i
        return None

    def partial(self, i: int, now: int) -> tuple[float, float, float, float, float]:
        """Partially formed values of candle ``i`` at ``now``: always differs from the final close and volume
        (volume unless it is 0); open is the true open; high/low lie inside the final range."""
        o, h, lo, c, v = self.o[i], self.h[i], self.l[i], self.c[i], self.v[i]
        span = max(1, int(self.ends[i] - self.ts[i]))
        f = min(max((now - int(self.ts[i])) / span, 0.0), 0.999)
        pc = round(o + (c - o) * f, 8)
        if pc == c:  # flat candle (c == o) or rounding: nudge inside [low, high] or just off the close
            pc = round(c - (c - lo) * 0.5, 8) if lo < c else round(c + (h - c) * 0.5, 8)
            if pc == c:
                pc = round(c * (1 - 1e-6), 8)
        ph = round(max(o, pc) + (h - max(o, c)) * f, 8)
        pl = round(min(o, pc) - (min(o, c) - lo) * f, 8)
        pv = round(v * f, 8)
        if pv == v and v > 0:
            pv = round(v * 0.5, 8)
        return float(o), float(max(ph, o, pc)), float(min(pl, o, pc)), float(pc), float(pv)

    def row(self, i: int, now: int | None = None) -> list[Any]:
        """Full Binance kline row; partially formed when ``now`` is given and the candle is open."""
        if now is not None and self.ts[i] <= now < self.ends[i]:
            o, h, lo, c, v = self.partial(i, now)
        else:
            o, h, lo, c, v = self.o[i], self.h[i], self.l[i], self.c[i], self.v[i]
        typical = (h + lo + c) / 3.0
        return [
            int(self.ts[i]),
            _fmt(o),
            _fmt(h),
            _fmt(lo),
            _fmt(c),
            _fmt(v),
            int(self.ends[i]) - 1,
            _fmt(round(v * typical, 8)),
            max(1, int(v * 7)) if v > 0 else 0,
            _fmt(round(v * 0.5, 8)),
            _fmt(round(v * 0.5 * typical, 8)),
            "0",
        ]


class _Trades:
    def __init__(self, df: pd.DataFrame):
        missing = {"trade_id", "timestamp", "price", "qty", "is_buyer_maker"} - set(df.columns)
        if missing:
            raise ValueError(f"trades need columns {sorted(missing)}")
        df = df.sort_values("trade_id").drop_duplicates("trade_id")
        self.ids = df["trade_id"].to_numpy(dtype=np.int64)
        self.ts = df["timestamp"].to_numpy(dtype=np.int64)
        self.p = df["price"].to_numpy(dtype=float)
        self.q = df["qty"].to_numpy(dtype=float)
        self.m = df["is_buyer_maker"].to_numpy(dtype=bool)

    def obj(self, i: int) -> dict[str, Any]:
        tid = int(self.ids[i])
        return {
            "a": tid,
            "p": _fmt(self.p[i]),
            "q": _fmt(self.q[i]),
            "f": tid,
            "l": tid,
            "T": int(self.ts[i]),
            "m": bool(self.m[i]),
            "M": True,
        }


class _Funding:
    def __init__(self, df: pd.DataFrame):
        missing = {"timestamp", "rate", "mark_price"} - set(df.columns)
        if missing:
            raise ValueError(f"funding needs columns {sorted(missing)}")
        df = df.sort_values("timestamp").drop_duplicates("timestamp", keep="last")
        self.ts = df["timestamp"].to_numpy(dtype=np.int64)
        self.rate = df["rate"].to_numpy(dtype=float)
        self.mark = df["mark_price"].to_numpy(dtype=float)


class _Market:
    def __init__(self, symbol: str, kind: str):
        base, quote, settle = _split_unified(symbol)
        self.symbol = symbol
        self.kind = kind  # 'spot' or 'linear'
        self.base, self.quote, self.settle = base, quote, settle
        self.id = base + quote
        self.price_decimals = 2
        self.qty_decimals = 5


class FakeBinance:
    """Fake Binance spot (+ USDT-M perpetual) REST server on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        *,
        candles: dict[tuple[str, str], pd.DataFrame] | None = None,
        trades: dict[str, pd.DataFrame] | None = None,
        books: dict[str, dict] | None = None,
        funding: dict[str, pd.DataFrame] | None = None,
        server_time_ms: int | None = None,
        open_candle: bool = False,
        timeout_fault_s: float = 2.5,
        host: str = "127.0.0.1",
    ):
        self.open_candle = bool(open_candle)
        self.delay_s: float = 0.0
        self.timeout_fault_s = float(timeout_fault_s)
        self.host = host
        self.requests: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._faults: deque[tuple[str, str]] = deque()

        self._spot: dict[str, _Market] = {}
        self._perp: dict[str, _Market] = {}
        self._candles: dict[tuple[str, str, str], _Candles] = {}  # (kind, id, interval)
        self._trades: dict[str, _Trades] = {}
        self._books: dict[str, dict] = {}
        self._funding: dict[str, _Funding] = {}

        price_samples: dict[tuple[str, str], list[np.ndarray]] = {}
        qty_samples: dict[tuple[str, str], list[np.ndarray]] = {}

        def market(symbol: str) -> _Market:
            kind = "linear" if ":" in symbol else "spot"
            table = self._perp if kind == "linear" else self._spot
            m = _Market(symbol, kind)
            return table.setdefault(m.id, m)

        for (symbol, interval), df in (candles or {}).items():
            m = market(symbol)
            series = _Candles(df, interval)
            self._candles[(m.kind, m.id, interval)] = series
            price_samples.setdefault((m.kind, m.id), []).extend([series.o[:2000], series.c[:2000]])
            qty_samples.setdefault((m.kind, m.id), []).append(series.v[:2000])
        for symbol, df in (trades or {}).items():
            m = market(symbol)
            if m.kind != "spot":
                raise ValueError(f"trades are served for spot symbols only, got {symbol!r}")
            t = _Trades(df)
            self._trades[m.id] = t
            price_samples.setdefault((m.kind, m.id), []).append(t.p[:2000])
            qty_samples.setdefault((m.kind, m.id), []).append(t.q[:2000])
        for symbol, book in (books or {}).items():
            m = market(symbol)
            if m.kind != "spot":
                raise ValueError(f"books are served for spot symbols only, got {symbol!r}")
            bids = sorted(([float(p), float(q)] for p, q in book.get("bids", [])), key=lambda r: -r[0])
            asks = sorted(([float(p), float(q)] for p, q in book.get("asks", [])), key=lambda r: r[0])
            self._books[m.id] = {"lastUpdateId": int(book.get("lastUpdateId", 1)), "bids": bids, "asks": asks}
            price_samples.setdefault((m.kind, m.id), []).append(np.array([r[0] for r in bids + asks]))
            qty_samples.setdefault((m.kind, m.id), []).append(np.array([r[1] for r in bids + asks]))
        for symbol, df in (funding or {}).items():
            if ":" not in symbol:
                raise ValueError(
                    f"funding is keyed by perpetual symbols like 'BTC/USDT:USDT', got {symbol!r}"
                )
            m = market(symbol)
            f = _Funding(df)
            self._funding[m.id] = f
            price_samples.setdefault((m.kind, m.id), []).append(f.mark[:2000])

        for (kind, mid), arrs in price_samples.items():
            table = self._perp if kind == "linear" else self._spot
            vals = np.concatenate([a for a in arrs if len(a)]) if any(len(a) for a in arrs) else np.array([])
            table[mid].price_decimals = _decimals(vals) if len(vals) else 2
        for (kind, mid), arrs in qty_samples.items():
            table = self._perp if kind == "linear" else self._spot
            vals = np.concatenate([a for a in arrs if len(a)]) if any(len(a) for a in arrs) else np.array([])
            table[mid].qty_decimals = _decimals(vals) if len(vals) else 5

        if server_time_ms is None:
            server_time_ms = self.data_end_ms() + DAY_MS
        self.server_time_ms: int = int(server_time_ms)

        self.base_url: str = ""
        self.port: int = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ public API

    def data_end_ms(self) -> int:
        """End of the data: latest candle close, trade or funding time (wall clock without data)."""
        ends = [int(s.ends[-1]) for s in self._candles.values() if len(s)]
        ends += [int(t.ts.max()) for t in self._trades.values() if len(t.ts)]
        ends += [int(f.ts[-1]) for f in self._funding.values() if len(f.ts)]
        if not ends:
            return int(pd.Timestamp.now(tz="UTC").value // 1_000_000)
        return max(ends)

    @property
    def symbols(self) -> list[str]:
        """Unified symbols served: spot first, then perpetuals."""
        return [m.symbol for m in self._spot.values()] + [m.symbol for m in self._perp.values()]

    def start(self, port: int = 0) -> FakeBinance:
        """Serve on ``host:port`` (0 = ephemeral) from a daemon thread; returns self."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        error: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def setup() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._dispatch)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self.host, port)
            await site.start()
            self._runner = runner
            sockname = runner.addresses[0]
            self.port = int(sockname[1])
            self.base_url = f"http://{self.host}:{self.port}"

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(setup())
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
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-binance", daemon=True)
        self._thread.start()
        ready.wait(30)
        if error:
            self._thread = None
            raise error[0]
        if not self.base_url:
            raise RuntimeError("fake binance did not start within 30 s")
        return self

    def stop(self) -> None:
        """Stop serving and join the server thread. Idempotent."""
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=5)
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ccxt_config(self, *, timeout_ms: int = 2000) -> dict:
        """Constructor options for ``ccxt.binance`` (sync, async or pro) that point every URL here."""
        if not self.base_url:
            raise RuntimeError("start() the fake before asking for its ccxt config")
        types = ["spot", "linear"] if self._perp else ["spot"]
        ws_base = "ws://" + self.base_url.split("://", 1)[1]
        return {
            "urls": _loopback_urls(self.base_url, ws_base),
            "options": {
                "fetchMarkets": {"types": types},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "adjustForTimeDifference": False,
            },
            "enableRateLimit": False,
            "timeout": int(timeout_ms),
        }

    def inject(self, fault: str, *, path: str = "/api/v3/klines", times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests whose path equals ``path``."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            for _ in range(int(times)):
                self._faults.append((fault, path))

    def fault_count(self) -> int:
        """Faults still queued."""
        with self._lock:
            return len(self._faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def paths(self) -> list[str]:
        """Paths of the requests served so far, in order."""
        with self._lock:
            return [p for p, _ in self.requests]

    # ------------------------------------------------------------------ plumbing

    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            for i, (fault, fpath) in enumerate(self._faults):
                if fpath == path:
                    del self._faults[i]
                    return fault
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        query = dict(request.query)
        with self._lock:
            self.requests.append((path, query))
        fault = self._take_fault(path)
        if path in ("/api/v3/klines", "/fapi/v1/klines") and self.delay_s > 0:
            await asyncio.sleep(self.delay_s)

        if fault in ("http_429", "http_418"):
            status = 429 if fault == "http_429" else 418
            return web.Response(status=status, text="Too Many Requests", headers={"Retry-After": "1"})
        if fault in ("rate_limit_1003", "rate_limit_1003_400"):
            status = 429 if fault == "rate_limit_1003" else 400
            msg = (
                "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
                "Please use WebSocket Streams for live updates to avoid polling the API."
            )
            return web.json_response({"code": -1003, "msg": msg}, status=status, headers={"Retry-After": "1"})
        if fault in ("http_500", "http_502", "http_503", "http_504"):
            status = int(fault[-3:])
            reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(
                status, "Gateway Timeout"
            )
            html = f"<html><body><h1>{status} {reason}</h1></body></html>"
            return web.Response(status=status, text=html, content_type="text/html")
        if fault == "disconnect":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        if fault == "timeout":
            await asyncio.sleep(self.timeout_fault_s)

        handler = _ROUTES.get(path)
        if handler is None or request.method != "GET":
            return web.json_response(
                {"code": -1, "msg": f"fake_binance: no route for {request.method} {path}"}, status=404
            )
        try:
            payload = handler(self, query)
        except _ApiError as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.status)

        if fault in ("duplicate_candles", "out_of_order") and isinstance(payload, list) and payload:
            payload = _mangle(payload, fault)
        body = json.dumps(payload, separators=(",", ":"))
        if fault == "malformed_json":
            body = body[: max(1, len(body) // 2)]
        return web.Response(text=body, content_type="application/json")

    def _now(self) -> int:
        return int(self.server_time_ms)

    # ------------------------------------------------------------------ query helpers

    @staticmethod
    def _int(query: dict, name: str, default: int | None = None) -> int | None:
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        if not re.fullmatch(r"-?[0-9]{1,20}", raw):
            raise _ApiError(
                400,
                -1100,
                f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
            )
        return int(raw)

    def _limit(self, query: dict, default: int, maximum: int) -> int:
        limit = self._int(query, "limit", default)
        assert limit is not None
        if limit <= 0:
            raise _ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        return min(limit, maximum)

    def _market(self, query: dict, kind: str, required: bool = True) -> _Market | None:
        mid = query.get("symbol")
        if mid is None:
            if required:
                raise _ApiError(
                    400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
                )
            return None
        table = self._perp if kind == "linear" else self._spot
        m = table.get(mid.upper())
        if m is None:
            raise _ApiError(400, -1121, "Invalid symbol.")
        return m

    # ------------------------------------------------------------------ endpoints

    def _ping(self, query: dict) -> Any:
        return {}

    def _time(self, query: dict) -> Any:
        return {"serverTime": self._now()}

    def _spot_symbol_info(self, m: _Market) -> dict:
        tick = _fmt(10.0**-m.price_decimals)
        step = _fmt(10.0**-m.qty_decimals)
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
            "orderTypes": [
                "LIMIT",
                "LIMIT_MAKER",
                "MARKET",
                "STOP_LOSS",
                "STOP_LOSS_LIMIT",
                "TAKE_PROFIT",
                "TAKE_PROFIT_LIMIT",
            ],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "amendAllowed": True,
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
                {"filterType": "ICEBERG_PARTS", "limit": 10},
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": "0.00000000",
                    "maxQty": "100.00000000",
                    "stepSize": "0.00000000",
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": "5.00000000",
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
            ],
            "permissions": ["SPOT"],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"],
        }

    def _rate_limits(self) -> list[dict]:
        return [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ]

    def _exchange_info(self, query: dict) -> Any:
        markets = list(self._spot.values())
        wanted: list[str] | None = None
        if "symbol" in query:
            wanted = [query["symbol"]]
        elif "symbols" in query:
            try:
                wanted = [str(s) for s in json.loads(query["symbols"])]
            except (ValueError, TypeError) as exc:
                raise _ApiError(400, -1100, "Illegal characters found in parameter 'symbols'.") from exc
        if wanted is not None:
            for w in wanted:
                if w not in self._spot:
                    raise _ApiError(400, -1121, "Invalid symbol.")
            markets = [self._spot[w] for w in wanted]
        return {
            "timezone": "UTC",
            "serverTime": self._now(),
            "rateLimits": self._rate_limits(),
            "exchangeFilters": [],
            "symbols": [self._spot_symbol_info(m) for m in markets],
        }

    def _fapi_exchange_info(self, query: dict) -> Any:
        symbols = []
        for m in self._perp.values():
            tick = _fmt(10.0**-m.price_decimals)
            step = _fmt(10.0 ** -min(m.qty_decimals, 3))
            symbols.append(
                {
                    "symbol": m.id,
                    "pair": m.id,
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000,
                    "onboardDate": 1569398400000,
                    "status": "TRADING",
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": m.base,
                    "quoteAsset": m.quote,
                    "marginAsset": m.settle or m.quote,
                    "pricePrecision": m.price_decimals,
                    "quantityPrecision": min(m.qty_decimals, 3),
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "underlyingSubType": [],
                    "settlePlan": 0,
                    "triggerProtect": "0.0500",
                    "liquidationFee": "0.012500",
                    "marketTakeBound": "0.05",
                    "maxMoveOrderLimit": 10000,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": tick,
                            "maxPrice": "4529764",
                            "tickSize": tick,
                        },
                        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "1000", "stepSize": step},
                        {"filterType": "MARKET_LOT_SIZE", "minQty": step, "maxQty": "120", "stepSize": step},
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                        {"filterType": "MIN_NOTIONAL", "notional": "100"},
                        {
                            "filterType": "PERCENT_PRICE",
                            "multiplierUp": "1.0500",
                            "multiplierDown": "0.9500",
                            "multiplierDecimal": "4",
                        },
                    ],
                    "orderTypes": [
                        "LIMIT",
                        "MARKET",
                        "STOP",
                        "STOP_MARKET",
                        "TAKE_PROFIT",
                        "TAKE_PROFIT_MARKET",
                    ],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
                }
            )
        assets = sorted({m.settle or m.quote for m in self._perp.values()})
        return {
            "timezone": "UTC",
            "serverTime": self._now(),
            "futuresType": "U_MARGINED",
            "rateLimits": self._rate_limits(),
            "exchangeFilters": [],
            "assets": [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"} for a in assets],
            "symbols": symbols,
        }

    def _klines_for(self, query: dict, kind: str) -> Any:
        m = self._market(query, kind)
        assert m is not None
        interval = query.get("interval")
        if interval is None:
            raise _ApiError(
                400, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
            )
        if interval not in INTERVAL_MS:
            raise _ApiError(400, -1120, "Invalid interval.")
        limit = self._limit(query, 500, 1000 if kind == "spot" else 1500)
        start = self._int(query, "startTime")
        end = self._int(query, "endTime")
        if start is not None and end is not None and start > end:
            raise _ApiError(400, -1023, "Start time is greater than end time.")
        series = self._candles.get((kind, m.id, interval))
        if series is None or not len(series):
            return []
        now = self._now()
        visible = series.n_closed(now)
        open_i = series.open_index(now) if self.open_candle else None
        if open_i is not None:
            visible = open_i + 1
        lo = int(np.searchsorted(series.ts, start, side="left")) if start is not None else 0
        hi = int(np.searchsorted(series.ts, end, side="right")) if end is not None else len(series)
        hi = min(hi, visible)
        if lo >= hi:
            return []
        idx = range(lo, min(hi, lo + limit)) if start is not None else range(max(lo, hi - limit), hi)
        return [series.row(i, now if i == open_i else None) for i in idx]

    def _klines(self, query: dict) -> Any:
        return self._klines_for(query, "spot")

    def _fapi_klines(self, query: dict) -> Any:
        return self._klines_for(query, "linear")

    def _agg_trades(self, query: dict) -> Any:
        m = self._market(query, "spot")
        assert m is not None
        limit = self._limit(query, 500, 1000)
        from_id = self._int(query, "fromId")
        start = self._int(query, "startTime")
        end = self._int(query, "endTime")
        if start is not None and end is not None:
            if start > end:
                raise _ApiError(400, -1023, "Start time is greater than end time.")
            if end - start > HOUR_MS:
                raise _ApiError(400, -1127, "More than 1 hours between startTime and endTime.")
        t = self._trades.get(m.id)
        if t is None or not len(t.ids):
            return []
        mask = t.ts <= self._now()
        if from_id is not None:
            mask &= t.ids >= from_id
        if start is not None:
            mask &= t.ts >= start
        if end is not None:
            mask &= t.ts <= end
        sel = np.flatnonzero(mask)
        sel = sel[:limit] if (from_id is not None or start is not None) else sel[-limit:]
        return [t.obj(int(i)) for i in sel]

    def _depth(self, query: dict) -> Any:
        m = self._market(query, "spot")
        assert m is not None
        limit = self._limit(query, 100, 5000)
        book = self._books.get(m.id, {"lastUpdateId": 1, "bids": [], "asks": []})
        return {
            "lastUpdateId": book["lastUpdateId"],
            "bids": [[_fmt(p), _fmt(q)] for p, q in book["bids"][:limit]],
            "asks": [[_fmt(p), _fmt(q)] for p, q in book["asks"][:limit]],
        }

    def _ticker_24hr(self, query: dict) -> Any:
        if "symbol" in query and "symbols" in query:
            raise _ApiError(400, -1128, "Combination of optional parameters invalid.")
        if "symbol" in query:
            m = self._market(query, "spot")
            assert m is not None
            return self._ticker_for(m)
        if "symbols" in query:
            try:
                ids = [str(s) for s in json.loads(query["symbols"])]
            except (ValueError, TypeError) as exc:
                raise _ApiError(400, -1100, "Illegal characters found in parameter 'symbols'.") from exc
            out = []
            for mid in ids:
                m = self._spot.get(mid)
                if m is None:
                    raise _ApiError(400, -1121, "Invalid symbol.")
                out.append(self._ticker_for(m))
            return out
        return [self._ticker_for(m) for m in self._spot.values()]

    def _ticker_for(self, m: _Market) -> dict:
        """24hr statistics at server time from the finest candles (or trades, or the book)."""
        now = self._now()
        o = h = lo = last = prev = 0.0
        vol = qvol = 0.0
        count = 0
        open_time = close_time = now
        first_id = last_id = -1
        last_qty = 0.0
        mine = [s for (kind, mid, _), s in self._candles.items() if kind == "spot" and mid == m.id and len(s)]
        # the finest series; '1M' counts as 31 days
        series = min(mine, key=lambda s: INTERVAL_MS[s.interval] or 31 * DAY_MS) if mine else None
        t = self._trades.get(m.id)
        book = self._books.get(m.id)
        if series is not None and (series.n_closed(now) > 0 or series.open_index(now) is not None):
            n = series.n_closed(now)
            open_i = series.open_index(now) if self.open_candle else None
            rows = [(series.o[i], series.h[i], series.l[i], series.c[i], series.v[i]) for i in range(n)]
            end_ms = int(series.ends[n - 1]) if n else now
            if open_i is not None:
                rows.append(series.partial(open_i, now))
                end_ms = now
            ts = list(series.ts[: len(rows)])
            window_start = end_ms - DAY_MS
            first = (
                next(i for i, x in enumerate(ts) if x >= window_start)
                if ts[-1] >= window_start
                else len(ts) - 1
            )
            win = rows[first:]
            o, last = float(win[0][0]), float(win[-1][3])
            h = float(max(r[1] for r in win))
            lo = float(min(r[2] for r in win))
            vol = float(sum(r[4] for r in win))
            qvol = float(sum(r[4] * (r[1] + r[2] + r[3]) / 3.0 for r in win))
            count = int(sum(max(1, int(r[4] * 7)) if r[4] > 0 else 0 for r in win))
            prev = float(rows[first - 1][3]) if first > 0 else o
            open_time, close_time = int(ts[first]), end_ms - 1
        elif t is not None and np.any(t.ts <= now):
            sel = np.flatnonzero(t.ts <= now)
            end_ms = int(t.ts[sel[-1]])
            sel = sel[t.ts[sel] > end_ms - DAY_MS]
            o, last = float(t.p[sel[0]]), float(t.p[sel[-1]])
            h, lo = float(t.p[sel].max()), float(t.p[sel].min())
            vol = float(t.q[sel].sum())
            qvol = float((t.p[sel] * t.q[sel]).sum())
            count = len(sel)
            prev = o
            open_time, close_time = int(t.ts[sel[0]]), end_ms
        elif book is not None and book["bids"] and book["asks"]:
            o = h = lo = last = prev = (book["bids"][0][0] + book["asks"][0][0]) / 2.0
        if t is not None:
            visible = np.flatnonzero((t.ts <= now) & (t.ts > now - DAY_MS))
            if len(visible):
                first_id, last_id = int(t.ids[visible[0]]), int(t.ids[visible[-1]])
                last_qty = float(t.q[visible[-1]])
        tick = 10.0**-m.price_decimals
        if book is not None and book["bids"] and book["asks"]:
            bid, bid_q = book["bids"][0]
            ask, ask_q = book["asks"][0]
        else:
            bid, bid_q, ask, ask_q = last, 1.0, round(last + tick, 8), 1.0
        change = last - o
        pct = (100.0 * change / o) if o else 0.0
        wavg = qvol / vol if vol else last
        rd = m.price_decimals
        return {
            "symbol": m.id,
            "priceChange": _fmt(round(change, rd)),
            "priceChangePercent": f"{pct:.3f}",
            "weightedAvgPrice": _fmt(round(wavg, 8)),
            "prevClosePrice": _fmt(prev),
            "lastPrice": _fmt(last),
            "lastQty": _fmt(last_qty),
            "bidPrice": _fmt(bid),
            "bidQty": _fmt(bid_q),
            "askPrice": _fmt(ask),
            "askQty": _fmt(ask_q),
            "openPrice": _fmt(o),
            "highPrice": _fmt(h),
            "lowPrice": _fmt(lo),
            "volume": _fmt(round(vol, 8)),
            "quoteVolume": _fmt(round(qvol, 8)),
            "openTime": int(open_time),
            "closeTime": int(close_time),
            "firstId": first_id,
            "lastId": last_id,
            "count": count,
        }

    def _funding_rate(self, query: dict) -> Any:
        m = self._market(query, "linear", required=False)
        limit = self._limit(query, 100, 1000)
        start = self._int(query, "startTime")
        end = self._int(query, "endTime")
        now = self._now()
        ids = [m.id] if m is not None else list(self._funding)
        rows: list[tuple[int, str, float, float]] = []
        for mid in ids:
            f = self._funding.get(mid)
            if f is None:
                continue
            mask = f.ts <= now
            if start is not None:
                mask &= f.ts >= start
            if end is not None:
                mask &= f.ts <= end
            rows += [(int(f.ts[i]), mid, float(f.rate[i]), float(f.mark[i])) for i in np.flatnonzero(mask)]
        rows.sort(key=lambda r: (r[0], r[1]))
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [
            {"symbol": mid, "fundingTime": ts, "fundingRate": _fmt(rate), "markPrice": _fmt(mark)}
            for ts, mid, rate, mark in rows
        ]

    def _premium_index(self, query: dict) -> Any:
        m = self._market(query, "linear", required=False)
        now = self._now()
        out = []
        for mid in [m.id] if m is not None else list(self._perp):
            f = self._funding.get(mid)
            rate, mark, next_t = 0.0, 0.0, (now // (8 * HOUR_MS) + 1) * 8 * HOUR_MS
            if f is not None and len(f.ts):
                i = int(np.searchsorted(f.ts, now, side="right")) - 1
                if i >= 0:
                    rate, mark = float(f.rate[i]), float(f.mark[i])
                if i + 1 < len(f.ts):
                    next_t = int(f.ts[i + 1])
                elif i >= 0:
                    next_t = int(f.ts[i]) + 8 * HOUR_MS
            out.append(
                {
                    "symbol": mid,
                    "markPrice": _fmt(mark),
                    "indexPrice": _fmt(mark),
                    "estimatedSettlePrice": _fmt(mark),
                    "lastFundingRate": _fmt(rate),
                    "interestRate": "0.00010000",
                    "nextFundingTime": next_t,
                    "time": now,
                }
            )
        return out[0] if m is not None else out


_ROUTES: dict[str, Any] = {
    "/api/v3/ping": FakeBinance._ping,
    "/api/v3/time": FakeBinance._time,
    "/api/v3/exchangeInfo": FakeBinance._exchange_info,
    "/api/v3/klines": FakeBinance._klines,
    "/api/v3/aggTrades": FakeBinance._agg_trades,
    "/api/v3/depth": FakeBinance._depth,
    "/api/v3/ticker/24hr": FakeBinance._ticker_24hr,
    "/fapi/v1/ping": FakeBinance._ping,
    "/fapi/v1/time": FakeBinance._time,
    "/fapi/v1/exchangeInfo": FakeBinance._fapi_exchange_info,
    "/fapi/v1/klines": FakeBinance._fapi_klines,
    "/fapi/v1/fundingRate": FakeBinance._funding_rate,
    "/fapi/v1/premiumIndex": FakeBinance._premium_index,
}


def _mangle(rows: list, fault: str) -> list:
    """Apply a list-level fault: repeat some rows in place, or shuffle the page."""
    if fault == "duplicate_candles":
        out: list = []
        dup_at = {0, len(rows) // 2, len(rows) - 1}
        for i, r in enumerate(rows):
            out.append(r)
            if i in dup_at:
                out.append(r)
        return out
    shuffled = list(rows)
    random.Random(len(rows)).shuffle(shuffled)
    if shuffled == rows and len(rows) > 1:
        shuffled.reverse()
    return shuffled


_URL_TABLE_CACHE: dict[str, Any] | None = None


def _ccxt_url_tables() -> dict[str, Any]:
    """The 'api', 'test' and 'demo' URL tables of ccxt.pro.binance (a superset of ccxt.binance's)."""
    global _URL_TABLE_CACHE
    if _URL_TABLE_CACHE is None:
        import ccxt

        tables: dict[str, Any] = {}
        urls = ccxt.binance().urls
        try:
            import ccxt.pro as ccxtpro

            pro = ccxtpro.binance.__new__(ccxtpro.binance)
            urls = pro.deep_extend(urls, ccxtpro.binance.describe(pro)["urls"])
        except Exception:  # pragma: no cover - ccxt.pro is optional
            pass
        for key in ("api", "test", "demo"):
            if isinstance(urls.get(key), dict):
                tables[key] = urls[key]
        _URL_TABLE_CACHE = tables
    return _URL_TABLE_CACHE


def _loopback_urls(http_base: str, ws_base: str) -> dict[str, Any]:
    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, str) and "://" in value:
            parts = urlsplit(value)
            if parts.scheme in ("ws", "wss"):
                # keep spot streams at /ws; other stream hosts get a prefix (fstream -> /fstream/ws, ...)
                label = (parts.hostname or "").split(".")[0]
                prefix = "" if label in ("stream", "") else "/" + label
                return ws_base + prefix + parts.path
            return http_base + parts.path
        return value

    return {key: rewrite(table) for key, table in _ccxt_url_tables().items()}


# ---------------------------------------------------------------------- sample data loaders


def trades_from_csv(path: str | Path) -> pd.DataFrame:
    """Sample tick trades (local_ts_ns, event_ts_ms, trade_ts_ms, trade_id, price, qty, is_buyer_maker)
    -> the ``trades`` frame FakeBinance takes."""
    raw = pd.read_csv(path)
    return pd.DataFrame(
        {
            "trade_id": raw["trade_id"].astype("int64"),
            "timestamp": raw["trade_ts_ms"].astype("int64"),
            "price": raw["price"].astype(float),
            "qty": raw["qty"].astype(float),
            "is_buyer_maker": raw["is_buyer_maker"].astype(bool),
        }
    )


def book_from_csv(path: str | Path) -> dict:
    """Sample depth snapshot (local_ts_ns, last_update_id, side, level, price, qty) -> a ``books`` entry.
    If the file holds several snapshots, the last one is used."""
    raw = pd.read_csv(path)
    last = raw["last_update_id"].max()
    snap = raw[raw["last_update_id"] == last].sort_values(["side", "level"])
    bids = snap[snap["side"] == "bid"][["price", "qty"]].astype(float).to_numpy().tolist()
    asks = snap[snap["side"] == "ask"][["price", "qty"]].astype(float).to_numpy().tolist()
    return {"lastUpdateId": int(last), "bids": bids, "asks": asks}


def synthetic_funding(
    candles_1h: pd.DataFrame, *, every_h: int = 8, seed: int = 0, start_ms: int | None = None
) -> pd.DataFrame:
    """8-hourly funding (timestamp, rate, mark_price) aligned to 00/08/16 UTC, marks from 1h closes."""
    ts = candles_1h["timestamp"].to_numpy(dtype=np.int64)
    close = candles_1h["close"].to_numpy(dtype=float)
    step = every_h * HOUR_MS
    first = int(start_ms if start_ms is not None else ts[0])
    first = -(-first // step) * step
    times = np.arange(first, int(ts[-1]) + 1, step, dtype=np.int64)
    idx = np.clip(np.searchsorted(ts, times, side="right") - 1, 0, len(ts) - 1)
    rng = np.random.default_rng(seed)
    rates = np.round(0.0001 + rng.normal(0, 0.00005, len(times)), 8)
    return pd.DataFrame({"timestamp": times, "rate": rates, "mark_price": np.round(close[idx], 2)})


def load_sample(directory: str | Path, *, funding: bool = False) -> dict[str, Any]:
    """Constructor kwargs from a sample folder: ``{ID}_{interval}.csv.gz`` candles and, under ``ticks/``,
    ``{ID}_trades_*.csv.gz`` and ``{ID}_depth_snapshot_*.csv.gz``. With ``funding=True``, synthetic
    8-hourly funding for each symbol that has 1h candles (as 'BASE/QUOTE:QUOTE')."""
    directory = Path(directory)
    candles: dict[tuple[str, str], pd.DataFrame] = {}
    trades: dict[str, pd.DataFrame] = {}
    books: dict[str, dict] = {}
    for p in sorted(directory.glob("*.csv*")):
        match = re.fullmatch(r"([A-Z0-9]+)_([0-9]+[smhdwM])\.csv(\.gz)?", p.name)
        if match and match.group(2) in INTERVAL_MS:
            base, quote = _split_id(match.group(1))
            candles[(f"{base}/{quote}", match.group(2))] = pd.read_csv(p)
    for p in sorted((directory / "ticks").glob("*.csv*")) if (directory / "ticks").is_dir() else []:
        match = re.fullmatch(r"([A-Z0-9]+)_(trades|depth_snapshot)_.*\.csv(\.gz)?", p.name)
        if not match:
            continue
        base, quote = _split_id(match.group(1))
        if match.group(2) == "trades":
            trades[f"{base}/{quote}"] = trades_from_csv(p)
        else:
            books[f"{base}/{quote}"] = book_from_csv(p)
    kwargs: dict[str, Any] = {"candles": candles, "trades": trades, "books": books}
    if funding:
        kwargs["funding"] = {
            f"{sym}:{_split_unified(sym)[1]}": synthetic_funding(df)
            for (sym, iv), df in candles.items()
            if iv == "1h" and len(df)
        }
    return kwargs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Binance REST server on loopback, for manual testing.")
    parser.add_argument("--sample", default="data/sample/binance", help="sample data folder")
    parser.add_argument("--port", type=int, default=0, help="0 = ephemeral")
    parser.add_argument(
        "--server-time-ms", type=int, default=None, help="simulated now (default: data end + 1 day)"
    )
    parser.add_argument("--open-candle", action="store_true", help="serve the still-open candle")
    parser.add_argument("--funding", action="store_true", help="add synthetic 8-hourly funding perps")
    args = parser.parse_args(argv)
    kwargs = load_sample(args.sample, funding=args.funding)
    fake = FakeBinance(**kwargs, server_time_ms=args.server_time_ms, open_candle=args.open_candle)
    fake.start(port=args.port)
    print(f"LISTENING {fake.base_url}", flush=True)
    print(
        f"symbols: {', '.join(fake.symbols)}; server time {fake.server_time_ms}", file=sys.stderr, flush=True
    )
    stop = threading.Event()
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
