"""Market-data collection from any ccxt exchange into the store.

Candles: paginated, incremental (only what the store's coverage lacks is fetched), resumable (each commit
saves rows and coverage atomically, so a killed run resumes at its last commit), never stores the still-open
candle (judged by the exchange's clock), and retries network errors, rate limits and 5xx with exponential
backoff. Trades, order-book snapshots, tickers and funding rates go through the same machinery.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from workbench.config import CollectConfig
from workbench.data import exchanges as ex
from workbench.data.store import Store, subtract_intervals
from workbench.types import CANDLE_COLUMNS, CandleValidationError, DataKey, Timeframe, ms_to_iso, to_ms

__all__ = ["CollectError", "CollectReport", "Collector", "Progress"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Exchanges whose public trades page exactly by trade id (the parameter name); others page by time.
TRADE_ID_PAGINATION: dict[str, str] = {
    "binance": "fromId",
    "binanceus": "fromId",
    "binanceusdm": "fromId",
    "binancecoinm": "fromId",
}

Progress = Callable[[str, int, int], None]
"""``progress(description, done, total)``: called as work advances (units: bars, or requests)."""


class CollectError(RuntimeError):
    """A collection that cannot go on; the message names the exchange, symbol and what failed."""


@dataclass
class CollectReport:
    key: DataKey
    requests: int = 0
    retries: int = 0
    rows_fetched: int = 0
    rows_added: int = 0
    rows_updated: int = 0
    commits: int = 0
    dropped_open: int = 0
    first: int | None = None
    last: int | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rng = f"{ms_to_iso(self.first)} .. {ms_to_iso(self.last)}" if self.first is not None else "nothing new"
        return (
            f"{self.key}: {self.rows_added} new, {self.rows_updated} updated rows ({rng}); "
            f"{self.requests} requests, {self.retries} retries, {self.commits} commits"
        )


class Collector:
    """Collects from one ccxt exchange client into a store.

    ``sleep`` and ``clock`` are injectable (tests); ``progress`` receives advancement callbacks.
    """

    def __init__(
        self,
        exchange: Any,
        store: Store,
        config: CollectConfig | None = None,
        *,
        progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.exchange = exchange
        self.store = store
        self.config = config or CollectConfig()
        self.progress = progress
        self.sleep = sleep
        self._markets_loaded = False
        self._report: CollectReport | None = None

    @property
    def exchange_id(self) -> str:
        return str(self.exchange.id)

    # ------------------------------------------------------------------ retries
    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` with retries on transient failures (network, rate limit, 5xx, timeouts, bad responses)."""
        attempt = 0
        while True:
            if self._report is not None:
                self._report.requests += 1
            try:
                return fn(*args, **kwargs)
            except (ex.NetworkError, ex.BadResponse) as e:
                host = dns_failure(e)
                if host is not None:  # no network or a wrong URL: retrying cannot help, so fail at once
                    raise CollectError(
                        f"{self.exchange_id}: {what}: cannot resolve the host name {host!r} (no network, or a "
                        f"wrong URL in the exchange's settings?); not retried"
                    ) from e
                if attempt >= self.config.max_retries:
                    raise CollectError(
                        f"{self.exchange_id}: {what}: giving up after {attempt + 1} attempts: "
                        f"{type(e).__name__}: {_short(e)}"
                    ) from e
                delay = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2**attempt)
                delay *= random.uniform(0.5, 1.0)
                if isinstance(e, ex.RateLimited):
                    delay = max(delay, self._retry_after())
                log.warning(
                    "%s: %s: %s (%s); retry %d/%d in %.2fs",
                    self.exchange_id,
                    what,
                    type(e).__name__,
                    _short(e),
                    attempt + 1,
                    self.config.max_retries,
                    delay,
                )
                if self._report is not None:
                    self._report.retries += 1
                self.sleep(delay)
                attempt += 1
            except ex.BadSymbol as e:
                raise CollectError(f"{self.exchange_id}: {what}: bad symbol: {_short(e)}") from e
            except ex.NotSupported as e:
                raise CollectError(f"{self.exchange_id}: {what}: not supported by the exchange: {_short(e)}") from e
            except ex.BaseError as e:
                raise CollectError(f"{self.exchange_id}: {what}: {type(e).__name__}: {_short(e)}") from e

    def _retry_after(self) -> float:
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        for k, v in dict(headers).items():
            if str(k).lower() == "retry-after":
                try:
                    return min(float(v), self.config.backoff_max_s)
                except ValueError:
                    return 0.0
        return 0.0

    # ------------------------------------------------------------------ checks
    def load_markets(self) -> None:
        if not self._markets_loaded:
            self.call("load markets", self.exchange.load_markets)
            self._markets_loaded = True

    def check_symbol(self, symbol: str) -> dict[str, Any]:
        self.load_markets()
        markets = self.exchange.markets or {}
        if symbol not in markets:
            hint = difflib.get_close_matches(symbol, list(markets), n=3, cutoff=0.6)
            raise CollectError(
                f"{self.exchange_id}: unknown symbol {symbol!r}"
                + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else "")
                + " — symbols are ccxt unified symbols such as 'BTC/USDT' (spot) or 'BTC/USDT:USDT' (perpetual)"
            )
        return markets[symbol]

    def check_timeframe(self, timeframe: str) -> Timeframe:
        try:
            tf = Timeframe.parse(timeframe)
        except ValueError as e:
            raise CollectError(f"{self.exchange_id}: {e}") from None
        offered = getattr(self.exchange, "timeframes", None) or {}
        if offered and tf.value not in offered:
            raise CollectError(
                f"{self.exchange_id}: timeframe {timeframe!r} is not offered; offered: {', '.join(offered)}"
            )
        return tf

    def now_ms(self) -> int:
        """The exchange's clock when it has one (local clocks drift), else the local clock."""
        if self.exchange.has.get("fetchTime"):
            t = self.call("fetch time", self.exchange.fetch_time)
            if t:
                return int(t)
        return int(self.exchange.milliseconds())

    # ------------------------------------------------------------------ candles
    def ohlcv(
        self,
        symbol: str,
        timeframe: str,
        since: object = None,
        until: object = None,
    ) -> CollectReport:
        """Fetch closed candles for ``[since, until)`` that the store lacks, and store them.

        Without ``since``, continues from the series' last stored candle (an error if nothing is stored).
        """
        tf = self.check_timeframe(timeframe)
        self.check_symbol(symbol)
        key = self.store.key("candles", self.exchange_id, symbol, tf.value)
        with self._reporting(key) as report:
            now = self.now_ms()
            start, end, coverage = self._range(key, since, until, now, grid=tf)
            missing = subtract_intervals((start, end), coverage)
            total = sum((b - a) // tf.ms for a, b in missing)
            done = 0
            self._progress(str(key), done, total)
            for a, b in missing:
                done = self._fetch_ohlcv_range(key, symbol, tf, a, b, now, done, total)
            self._progress(str(key), total, total)
            return report

    def _fetch_ohlcv_range(
        self, key: DataKey, symbol: str, tf: Timeframe, a: int, b: int, now: int, done: int, total: int
    ) -> int:
        report = self._report
        assert report is not None
        cursor = a
        seg_start = a
        buf: list[np.ndarray] = []
        buffered = 0
        limit = self.config.page_limit
        while cursor < b:
            rows = self.call(
                f"fetch {symbol} {tf} candles from {ms_to_iso(cursor)}",
                self.exchange.fetch_ohlcv,
                symbol,
                tf.value,
                since=cursor,
                limit=limit,
                params={"until": b - 1},
            )
            page = _ohlcv_page(rows, f"{key}: page from {ms_to_iso(cursor)}")
            report.rows_fetched += len(page)
            if len(page):
                open_mask = page[:, 0] + tf.ms > now
                report.dropped_open += int(open_mask.sum())
                page = page[(page[:, 0] >= cursor) & (page[:, 0] < b) & ~open_mask]
            if not len(page):
                break  # the exchange has nothing more in this range
            bad = np.flatnonzero(page[:, 0].astype("int64") % tf.ms)
            if bad.size:
                raise CollectError(
                    f"{key}: the exchange returned a candle at {int(page[bad[0], 0])} "
                    f"({ms_to_iso(int(page[bad[0], 0]))}) that is not on the {tf} grid"
                )
            buf.append(page)
            buffered += len(page)
            new_cursor = int(page[-1, 0]) + tf.ms
            done += max(0, (new_cursor - cursor) // tf.ms)
            cursor = new_cursor
            if buffered >= self.config.commit_every_rows:
                self._commit_candles(key, buf, (seg_start, cursor))
                seg_start, buf, buffered = cursor, [], 0
            self._progress(str(key), min(done, total), total)
        if buf:
            self._commit_candles(key, buf, (seg_start, cursor))
        return done

    def _commit_candles(self, key: DataKey, pages: list[np.ndarray], coverage: tuple[int, int]) -> None:
        report = self._report
        assert report is not None
        arr = np.concatenate(pages)
        df = pd.DataFrame(arr[:, 1:6], columns=list(CANDLE_COLUMNS))
        df.insert(0, "ts", arr[:, 0].astype("int64"))
        try:
            res = self.store.write(key, df, source=f"{key} from {self.exchange_id}", coverage=coverage)
        except CandleValidationError as e:
            raise CollectError(f"the exchange sent invalid candles: {e}") from e
        report.rows_added += res.rows_added
        report.rows_updated += res.rows_updated
        report.commits += 1
        first, last = int(arr[0, 0]), int(arr[-1, 0])
        report.first = first if report.first is None else min(report.first, first)
        report.last = last if report.last is None else max(report.last, last)

    @contextlib.contextmanager
    def _reporting(self, key: DataKey) -> Iterator[CollectReport]:
        """The report of the collection under way: requests, retries and commits are counted into it."""
        self._report = CollectReport(key)
        try:
            yield self._report
        finally:
            self._report = None

    def _range(
        self, key: DataKey, since: object, until: object, now: int, grid: Timeframe | None = None
    ) -> tuple[int, int, list[tuple[int, int]]]:
        """``(start, end, coverage)`` of a paged time-series collection. Without ``since``, continue from the
        end of what is covered; on a timeframe grid, ``start`` is the first bar opening at or after ``since``
        and ``end`` the open of the first bar not yet closed at ``now``."""
        coverage = self.store.coverage(key)
        end = now if until is None else min(_ms(until, "until"), now)
        if grid is not None:
            end = grid.floor(end)
        if since is None:
            if not coverage:
                raise CollectError(
                    f"{key}: nothing stored yet, so a start is needed: give --since (e.g. --since 2024-01-01)"
                )
            start = coverage[-1][1]
        else:
            start = _ms(since, "since")
            if grid is not None:
                start = -(-start // grid.ms) * grid.ms
        if start > end:
            raise CollectError(f"{key}: since {ms_to_iso(start)} is after until {ms_to_iso(end)}")
        return start, end, coverage

    def _progress(self, what: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(what, done, total)

    # ------------------------------------------------------------------ trades
    def trades(self, symbol: str, since: object = None, until: object = None) -> CollectReport:
        """Fetch public trades from ``since`` (default: the last stored trade) up to ``until`` (default: now)."""
        self.check_symbol(symbol)
        key = self.store.key("trades", self.exchange_id, symbol)
        with self._reporting(key) as report:
            now = self.now_ms()
            end = now if until is None else min(_ms(until, "until"), now)
            bounds = self.store.bounds(key)
            if since is None:
                if bounds is None:
                    raise CollectError(f"{key}: nothing stored yet, so a start is needed: give --since")
                cursor = bounds[1]  # inclusive: the id dedups the overlap
            else:
                cursor = _ms(since, "since")
            window = 3_600_000  # Binance's aggTrades window; harmless elsewhere
            id_param = TRADE_ID_PAGINATION.get(self.exchange_id)
            from_id: int | None = None
            total = max(1, (end - cursor) // window + 1)
            step = 0
            pending: list[dict[str, Any]] = []
            while cursor < end:
                if from_id is not None:
                    page = self.call(
                        f"fetch {symbol} trades from id {from_id}",
                        self.exchange.fetch_trades,
                        symbol,
                        limit=self.config.page_limit,
                        params={id_param: from_id},
                    )
                else:
                    page = self.call(
                        f"fetch {symbol} trades from {ms_to_iso(cursor)}",
                        self.exchange.fetch_trades,
                        symbol,
                        since=cursor,
                        limit=self.config.page_limit,
                    )
                trades = [t for t in page if t.get("timestamp") is not None and cursor <= t["timestamp"] < end]
                report.rows_fetched += len(trades)
                step += 1
                if not trades:
                    if from_id is not None or (page and page[-1].get("timestamp", 0) >= end):
                        break  # nothing after the last id, or only trades past the end
                    cursor = min(end, cursor + window)
                    continue
                pending.extend(trades)
                last = trades[-1]
                if id_param and str(last.get("id", "")).isdigit():
                    # exact: by trade id, so a millisecond holding more trades than a page loses none
                    from_id = int(last["id"]) + 1
                    cursor = int(last["timestamp"])
                elif len(trades) >= self.config.page_limit and last["timestamp"] > cursor:
                    cursor = int(last["timestamp"])  # the id dedups the overlap
                else:
                    if len(trades) >= self.config.page_limit:
                        report.notes.append(
                            f"more than {self.config.page_limit} trades at {ms_to_iso(cursor)}: the exchange pages by "
                            "time only, so some may be missing; raise collect.page_limit"
                        )
                    cursor = int(last["timestamp"]) + 1
                if len(pending) >= self.config.commit_every_rows:
                    self._commit_rows(key, _trades_frame(pending))
                    pending = []
                self._progress(str(key), min(step, total), total)
            if pending:
                self._commit_rows(key, _trades_frame(pending))
            return report

    def _commit_rows(self, key: DataKey, df: pd.DataFrame, coverage: tuple[int, int] | None = None) -> None:
        report = self._report
        assert report is not None
        if df.empty and coverage is None:
            return
        res = self.store.write(key, df, source=f"{key} from {self.exchange_id}", coverage=coverage)
        report.rows_added += res.rows_added
        report.rows_updated += res.rows_updated
        report.commits += 1
        if len(df):
            first, last = int(df["ts"].min()), int(df["ts"].max())
            report.first = first if report.first is None else min(report.first, first)
            report.last = last if report.last is None else max(report.last, last)

    # ------------------------------------------------------------------ order book
    def orderbook(
        self, symbol: str, depth: int = 100, count: int = 1, interval_s: float = 1.0
    ) -> CollectReport:
        """Store ``count`` snapshots of the order book, ``depth`` levels a side, ``interval_s`` apart."""
        self.check_symbol(symbol)
        key = self.store.key("orderbook", self.exchange_id, symbol)
        with self._reporting(key) as report:
            for i in range(count):
                if i:
                    self.sleep(interval_s)
                book = self.call(
                    f"fetch {symbol} order book", self.exchange.fetch_order_book, symbol, limit=depth
                )
                ts = book.get("timestamp") or self.now_ms()
                rows = [
                    (int(ts), side, level, float(p), float(q))
                    for side in ("bids", "asks")
                    for level, (p, q, *_) in enumerate(book.get(side, [])[:depth])
                ]
                df = pd.DataFrame(rows, columns=["ts", "side", "level", "price", "amount"])
                df["side"] = df["side"].map({"bids": "bid", "asks": "ask"})
                report.rows_fetched += len(df)
                self._commit_rows(key, df)
                self._progress(str(key), i + 1, count)
            return report

    # ------------------------------------------------------------------ tickers
    def tickers(self, symbols: Sequence[str]) -> list[CollectReport]:
        """Store one ticker snapshot per symbol."""
        for s in symbols:
            self.check_symbol(s)
        data = self.call("fetch tickers", self.exchange.fetch_tickers, list(symbols))
        now = None
        reports = []
        for s in symbols:
            t = data.get(s)
            key = self.store.key("tickers", self.exchange_id, s)
            with self._reporting(key) as report:
                if t is None:
                    report.notes.append("no ticker returned")
                    reports.append(report)
                    continue
                ts = t.get("timestamp")
                if ts is None:
                    now = now or self.now_ms()
                    ts = now
                row = {
                    "ts": int(ts),
                    "bid": _f(t.get("bid")),
                    "ask": _f(t.get("ask")),
                    "last": _f(t.get("last")),
                    "base_volume": _f(t.get("baseVolume")),
                    "quote_volume": _f(t.get("quoteVolume")),
                }
                report.rows_fetched += 1
                self._commit_rows(key, pd.DataFrame([row]))
                reports.append(report)
        return reports

    # ------------------------------------------------------------------ funding
    def funding(self, symbol: str, since: object = None, until: object = None) -> CollectReport:
        """Funding-rate history of a perpetual swap (``BTC/USDT:USDT``), incremental like candles."""
        if not self.exchange.has.get("fetchFundingRateHistory"):
            raise CollectError(f"{self.exchange_id}: the exchange offers no funding-rate history")
        market = self.check_symbol(symbol)
        if not market.get("swap"):
            raise CollectError(
                f"{self.exchange_id}: {symbol!r} is not a perpetual swap; funding rates exist for perpetuals "
                f"such as '{market.get('base', 'BTC')}/{market.get('quote', 'USDT')}:{market.get('quote', 'USDT')}'"
            )
        key = self.store.key("funding", self.exchange_id, symbol)
        with self._reporting(key) as report:
            start, end, coverage = self._range(key, since, until, self.now_ms())
            for a, b in subtract_intervals((start, end), coverage):
                cursor = a
                while cursor < b:
                    rows = self.call(
                        f"fetch {symbol} funding from {ms_to_iso(cursor)}",
                        self.exchange.fetch_funding_rate_history,
                        symbol,
                        since=cursor,
                        limit=self.config.page_limit,
                        params={"until": b - 1},
                    )
                    rows = [r for r in rows if r.get("timestamp") is not None and cursor <= r["timestamp"] < b]
                    report.rows_fetched += len(rows)
                    if not rows:
                        break
                    df = pd.DataFrame(
                        {
                            "ts": [int(r["timestamp"]) for r in rows],
                            "rate": [_f(r.get("fundingRate")) for r in rows],
                            "mark_price": [_f((r.get("info") or {}).get("markPrice")) for r in rows],
                        }
                    )
                    new_cursor = int(df["ts"].max()) + 1
                    self._commit_rows(key, df, coverage=(cursor, new_cursor))
                    cursor = new_cursor
            return report


# ---------------------------------------------------------------------------------------- helpers


def _ms(value: object, what: str) -> int:
    try:
        return to_ms(value, what=what)
    except ValueError as e:
        raise CollectError(str(e)) from None


def _f(v: Any) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


_DNS_WORDS = (
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "failed to resolve",
    "no address associated with hostname",
    "getaddrinfo failed",
)


def dns_failure(e: BaseException) -> str | None:
    """The host name whose lookup failed, if ``e`` (a ccxt error, through its chain of causes) is a DNS
    failure (``socket.gaierror``, urllib3's ``NameResolutionError``, aiohttp's DNS error); else None.
    ``'?'`` when the host is not known."""
    import re
    import socket

    seen: set[int] = set()
    todo: list[Any] = [e]
    hit = False
    text = []
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, socket.gaierror) or type(x).__name__ in ("NameResolutionError", "ClientConnectorDNSError"):
            hit = True
        if isinstance(x, BaseException):
            text.append(str(x))
            todo += [x.__cause__, x.__context__, getattr(x, "reason", None), getattr(x, "os_error", None)]
            todo += [a for a in x.args if isinstance(a, BaseException)]
    joined = " ".join(text)
    if not hit and not any(w in joined.lower() for w in _DNS_WORDS):
        return None
    m = re.search(r"host='([^']+)'", joined) or re.search(r"resolve '([^']+)'", joined)
    if m is None:
        m = re.search(r"https?://([^/:\s]+)", joined)
    return m.group(1) if m else "?"


def _short(e: BaseException, n: int = 300) -> str:
    s = ex.redact(str(e))
    return s if len(s) <= n else s[:n] + "…"


def _ohlcv_page(rows: Any, source: str) -> np.ndarray:
    """A page of ccxt OHLCV rows as a float array sorted by time, duplicates dropped (the last one wins)."""
    if not rows:
        return np.empty((0, 6))
    try:
        arr = np.array([r[:6] for r in rows], dtype="float64")
    except (TypeError, ValueError, IndexError) as e:
        raise CollectError(f"{source}: malformed OHLCV rows from the exchange ({e})") from e
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise CollectError(f"{source}: malformed OHLCV rows from the exchange (shape {arr.shape})")
    order = np.argsort(arr[:, 0], kind="stable")
    arr = arr[order]
    keep = np.ones(len(arr), dtype=bool)
    keep[:-1] = arr[:-1, 0] != arr[1:, 0]
    return arr[keep]


def _trades_frame(trades: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": [int(t["timestamp"]) for t in trades],
            "id": [str(t.get("id") if t.get("id") is not None else f"{t['timestamp']}-{i}") for i, t in enumerate(trades)],
            "price": [_f(t.get("price")) for t in trades],
            "amount": [_f(t.get("amount")) for t in trades],
            "side": [str(t.get("side") or "") for t in trades],
        }
    )
