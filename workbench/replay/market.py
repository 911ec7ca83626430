"""One replayed market: its candles, the price path synthesised inside each bar, synthetic trades and book.

Everything here is a pure function of the recorded candles and the replay time, so two servers (or one server
restarted) given the same data serve the same prices, trades, books and update ids at the same replay time.

Price path inside a bar (open ``t0``, length ``tf``): four points joined by straight lines,
``(t0, open)``, ``(t0 + tf//3, A)``, ``(t0 + 2*tf//3, B)``, ``(t0 + tf, close)``, where ``A, B = low, high`` for a
bar that closes at or above its open (it dips first, then rallies) and ``A, B = high, low`` for a bar that closes
below its open. The bar's high and low are therefore reached, and its close is the price at its end. At the next
bar's open the price jumps to that bar's open; in a gap in the data the price stays at the last close. The
*current price* at a time is that path rounded to the market's tick.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["BookParams", "MarketSeries", "decimals_of", "fmt", "split_symbol"]

_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY", "DAI")


def fmt(x: float, decimals: int = 8) -> str:
    """A Binance-style decimal string ('42283.58000000')."""
    return f"{float(x):.{decimals}f}"


def split_symbol(symbol: str) -> tuple[str, str]:
    """'BTC/USDT' -> ('BTC', 'USDT'); a clear error for anything else."""
    if symbol.count("/") != 1 or ":" in symbol:
        raise ValueError(f"replay exchange: {symbol!r} is not a spot symbol like 'BTC/USDT'")
    base, quote = symbol.split("/")
    if not base or not quote:
        raise ValueError(f"replay exchange: {symbol!r} is not a spot symbol like 'BTC/USDT'")
    return base.upper(), quote.upper()


def decimals_of(values: np.ndarray, cap: int = 8) -> int:
    """How many decimals write every one of ``values`` (a sample of them), at most ``cap``."""
    vals = np.asarray(values, dtype=float)
    vals = vals[np.isfinite(vals)]
    if len(vals) > 4000:
        vals = vals[:: max(1, len(vals) // 4000)]
    for d in range(cap + 1):
        if np.all(np.abs(np.round(vals, d) - vals) <= 1e-9 * np.maximum(1.0, np.abs(vals))):
            return d
    return cap


@dataclass(frozen=True)
class BookParams:
    """The synthetic order book around the current price ``p`` (tick ``t``): best bid ``p``, best ask
    ``p + spread_ticks·t``, then ``levels`` levels a side spaced ``level_ticks·t`` apart; level ``j`` (0 = best)
    holds ``qty·(1 + j/2)`` base units (rounded to the lot step). ``step_ms``: the book is recomputed on a grid of
    this many replay milliseconds; its update id is ``replay_ms // step_ms`` (contiguous as the clock runs)."""

    spread_ticks: int = 1
    levels: int = 20
    level_ticks: int = 1
    qty: float = 0.5
    step_ms: int = 100


class MarketSeries:
    """Candles of one symbol at one timeframe and what the replay derives from them."""

    def __init__(self, symbol: str, timeframe_ms: int, candles: pd.DataFrame, *, trades_per_bar: int = 60):
        self.symbol = symbol
        self.base, self.quote = split_symbol(symbol)
        self.id = self.base + self.quote
        self.tf = int(timeframe_ms)
        if self.tf <= 0:
            raise ValueError(f"replay exchange: bad timeframe length {timeframe_ms} for {symbol}")
        frame = _as_frame(candles, symbol)
        if frame.empty:
            raise ValueError(f"replay exchange: no candles for {symbol}")
        self.ts = frame["timestamp"].to_numpy(dtype=np.int64)
        if np.any(self.ts % self.tf):
            bad = int(self.ts[np.flatnonzero(self.ts % self.tf)[0]])
            raise ValueError(
                f"replay exchange: {symbol} candle at {pd.Timestamp(bad, unit='ms', tz='UTC')} is off the "
                f"{self.tf} ms grid (wrong timeframe?)"
            )
        self.o = frame["open"].to_numpy(dtype=float)
        self.h = frame["high"].to_numpy(dtype=float)
        self.l = frame["low"].to_numpy(dtype=float)
        self.c = frame["close"].to_numpy(dtype=float)
        self.v = frame["volume"].to_numpy(dtype=float)
        self.ends = self.ts + self.tf
        self.price_decimals = decimals_of(np.concatenate([self.o[:4000], self.c[:4000], self.h[:4000]]))
        self.qty_decimals = max(decimals_of(self.v[:4000]), 1)
        self.tick = round(10.0**-self.price_decimals, self.price_decimals)
        self.step = round(10.0**-self.qty_decimals, self.qty_decimals)
        self.trades_per_bar = max(1, int(trades_per_bar))
        self.rt_ts = np.empty(0, dtype=np.int64)  # recorded trades (the tape), empty when none
        self.rt_id = np.empty(0, dtype=np.int64)
        self.rt_p = self.rt_q = np.empty(0, dtype=float)
        self.rt_m = np.empty(0, dtype=bool)
        self.rb: list[tuple[int, list[tuple[float, float]], list[tuple[float, float]]]] = []
        self.rb_ts = np.empty(0, dtype=np.int64)
        self.book_hold_ms = 60_000

    # ------------------------------------------------------------------ time -> bar
    @property
    def first_ms(self) -> int:
        return int(self.ts[0])

    @property
    def end_ms(self) -> int:
        """When the last candle closes."""
        return int(self.ends[-1])

    def n_closed(self, now: int) -> int:
        """How many leading candles are closed at ``now`` (close time <= now)."""
        return int(np.searchsorted(self.ends, now, side="right"))

    def bar_at(self, t: int) -> int | None:
        """Index of the bar with ``open <= t < close``, or None (before the data, in a gap, after it)."""
        i = int(np.searchsorted(self.ts, t, side="right")) - 1
        if i >= 0 and t < self.ends[i]:
            return i
        return None

    # ------------------------------------------------------------------ the price path
    def points(self, i: int) -> list[tuple[int, float]]:
        """The four path points of bar ``i``."""
        t0 = int(self.ts[i])
        up = self.c[i] >= self.o[i]
        a, b = (self.l[i], self.h[i]) if up else (self.h[i], self.l[i])
        return [
            (t0, float(self.o[i])),
            (t0 + self.tf // 3, float(a)),
            (t0 + 2 * self.tf // 3, float(b)),
            (t0 + self.tf, float(self.c[i])),
        ]

    def raw_price(self, t: int) -> float | None:
        """The unrounded path at ``t``; None before the first candle."""
        i = self.bar_at(t)
        if i is None:
            j = int(np.searchsorted(self.ts, t, side="right")) - 1
            return None if j < 0 else float(self.c[j])
        pts = self.points(i)
        for (ta, pa), (tb, pb) in itertools.pairwise(pts):
            if t < tb:
                return pa + (pb - pa) * (t - ta) / (tb - ta)
        return pts[-1][1]

    def round_price(self, p: float) -> float:
        return round(round(p / self.tick) * self.tick, self.price_decimals)

    def round_qty(self, q: float) -> float:
        """Down to the lot step (with a little slack for float noise)."""
        return round(math.floor(q / self.step + 1e-9) * self.step, self.qty_decimals)

    def path_price(self, t: int) -> float | None:
        """The candle path at ``t`` rounded to the tick; None before the data."""
        p = self.raw_price(t)
        return None if p is None else self.round_price(p)

    def price(self, t: int) -> float | None:
        """The current price at ``t``: the last recorded trade inside the recorded tape, else the candle path
        rounded to the tick; None before the data."""
        if self.in_tape(t):
            return float(self.rt_p[int(np.searchsorted(self.rt_ts, t, side="right")) - 1])
        return self.path_price(t)

    # ------------------------------------------------------------------ recorded trades and books
    def set_recorded(
        self, trades: pd.DataFrame | None = None, books: pd.DataFrame | None = None, *, hold_ms: int = 60_000
    ) -> None:
        """Serve recorded trades (store ``trades`` rows: ts, id, price, amount, side) and order-book snapshots
        (store ``orderbook`` rows: ts, side, level, price, amount) where they exist. Inside the tape
        (first..last recorded trade) the recorded trades replace the synthetic ones and set the current price;
        a snapshot is the book from its time until the next one or ``hold_ms`` later."""
        if trades is not None and len(trades):
            t = trades.sort_values(
                ["ts", "id"], key=lambda c: pd.to_numeric(c, errors="coerce"), kind="stable"
            )
            try:
                ids = pd.to_numeric(t["id"]).to_numpy(dtype=np.int64)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"replay exchange: recorded {self.symbol} trades need integer ids: {exc}"
                ) from exc
            self.rt_ts = t["ts"].to_numpy(dtype=np.int64)
            self.rt_id = ids
            self.rt_p = np.array([self.round_price(x) for x in t["price"].to_numpy(dtype=float)])
            self.rt_q = t["amount"].to_numpy(dtype=float)
            self.rt_m = (
                t["side"].astype(str) == "sell"
            ).to_numpy()  # the taker sold: the buyer was the maker
        if books is not None and len(books):
            snaps = []
            for ts, g in books.groupby("ts", sort=True):
                g = g.sort_values("level")
                bids = [
                    (float(p), float(q)) for p, q in g.loc[g["side"] == "bid", ["price", "amount"]].to_numpy()
                ]
                asks = [
                    (float(p), float(q)) for p, q in g.loc[g["side"] == "ask", ["price", "amount"]].to_numpy()
                ]
                if bids and asks:
                    snaps.append((int(ts), bids, asks))
            self.rb = snaps
            self.rb_ts = np.array([x[0] for x in snaps], dtype=np.int64)
        self.book_hold_ms = int(hold_ms)

    def in_tape(self, t: int) -> bool:
        return len(self.rt_ts) > 0 and int(self.rt_ts[0]) <= t <= int(self.rt_ts[-1])

    def _tape_trade(self, j: int) -> dict:
        return {
            "id": int(self.rt_id[j]),
            "time": int(self.rt_ts[j]),
            "price": float(self.rt_p[j]),
            "qty": float(self.rt_q[j]),
            "buyer_maker": bool(self.rt_m[j]),
        }

    def recorded_book(self, t: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]] | None:
        if not len(self.rb_ts):
            return None
        j = int(np.searchsorted(self.rb_ts, t, side="right")) - 1
        if j < 0 or t >= int(self.rb_ts[j]) + self.book_hold_ms:
            return None
        return self.rb[j][1], self.rb[j][2]

    def partial(self, i: int, t: int) -> tuple[float, float, float, float, float]:
        """(open, high, low, close, volume) of bar ``i`` as formed at ``t`` (the full bar when ``t`` >= its close)."""
        if t >= self.ends[i]:
            return (float(self.o[i]), float(self.h[i]), float(self.l[i]), float(self.c[i]), float(self.v[i]))
        seen = [p for (tp, p) in self.points(i) if tp <= t]
        c = self.price(t)
        assert c is not None
        seen.append(c)
        frac = (t - int(self.ts[i])) / self.tf
        vol = round(float(self.v[i]) * frac, self.qty_decimals)
        return (float(self.o[i]), max(seen), min(seen), c, vol)

    def path_between(self, a: int, b: int) -> list[tuple[int, float]]:
        """The path's corner points on ``[a, b]`` in time order, endpoints included (a jump at a bar boundary is
        two points at one time: the close, then the next open)."""
        pa = self.raw_price(a)
        if pa is None:  # before the data: the path starts at the first open
            first = int(np.searchsorted(self.ts, a, side="left"))
            if first >= len(self.ts) or self.ts[first] > b:
                return []
            a, pa = int(self.ts[first]), float(self.o[first])
        out: list[tuple[int, float]] = [(a, pa)]
        i0 = max(0, int(np.searchsorted(self.ts, a, side="right")) - 1)
        i1 = int(np.searchsorted(self.ts, b, side="right"))
        for i in range(i0, i1):
            t0 = int(self.ts[i])
            if i > 0 and t0 > self.ends[i - 1] and a < t0:  # a gap: flat at the last close, then the jump
                out.append((t0, float(self.c[i - 1])))
            out.extend((tp, p) for tp, p in self.points(i) if a < tp <= b)
        pb = self.raw_price(b)
        if pb is not None and out[-1] != (b, pb):
            out.append((b, pb))
        return out

    def first_touch(self, a: int, b: int, level: float, buy: bool) -> int | None:
        """The first time in ``[a, b]`` at which the price is at or through ``level`` (at or below it for a
        buy, at or above it for a sell), or None: on the candle path, and inside the recorded tape on the
        recorded trades."""
        if not len(self.rt_ts) or b < self.rt_ts[0] or a > self.rt_ts[-1]:
            return self._path_touch(a, b, level, buy)
        f, last = int(self.rt_ts[0]), int(self.rt_ts[-1])
        if a < f:
            hit = self._path_touch(a, f - 1, level, buy)
            if hit is not None:
                return hit
        lo = max(a, f)
        j0 = max(0, int(np.searchsorted(self.rt_ts, lo, side="right")) - 1)  # the trade in force at lo
        j1 = int(np.searchsorted(self.rt_ts, min(b, last), side="right"))
        for j in range(j0, j1):
            p = self.rt_p[j]
            if (p <= level) if buy else (p >= level):
                return max(lo, int(self.rt_ts[j]))
        if b > last:
            return self._path_touch(last + 1, b, level, buy)
        return None

    def _path_touch(self, a: int, b: int, level: float, buy: bool) -> int | None:
        pts = self.path_between(a, b)
        if not pts:
            return None
        t_prev, p_prev = pts[0]
        if (p_prev <= level) if buy else (p_prev >= level):
            return t_prev
        for t, p in pts[1:]:
            hit = (p <= level) if buy else (p >= level)
            if hit:
                if t == t_prev or p == p_prev:
                    return t
                frac = (level - p_prev) / (p - p_prev)
                return min(t, max(t_prev, t_prev + math.ceil((t - t_prev) * frac)))
            t_prev, p_prev = t, p
        return None

    # ------------------------------------------------------------------ synthetic trades
    def _trade_time(self, tid: int) -> tuple[int, int]:
        """(bar index, time) of synthetic trade ``tid`` (ids start at 1)."""
        i, k = divmod(tid - 1, self.trades_per_bar)
        return i, int(self.ts[i]) + k * self.tf // self.trades_per_bar

    def trade(self, tid: int) -> dict:
        """Synthetic trade ``tid``: the path's price at its time; the aggressor sold when the price ticked down."""
        i, t = self._trade_time(tid)
        p = self.path_price(t)
        assert p is not None
        prev = self.path_price(self._trade_time(tid - 1)[1]) if tid > 1 else p
        qty = max(self.step, self.round_qty(float(self.v[i]) / self.trades_per_bar))
        return {
            "id": tid,
            "time": t,
            "price": p,
            "qty": qty,
            "buyer_maker": bool(prev is not None and p < prev),
        }

    def last_trade_id(self, now: int) -> int:
        """Id of the latest synthetic trade at or before ``now`` (0: none yet)."""
        i = int(np.searchsorted(self.ts, now, side="right")) - 1
        if i < 0:
            return 0
        k = min(self.trades_per_bar - 1, (now - int(self.ts[i])) * self.trades_per_bar // self.tf)
        return i * self.trades_per_bar + int(k) + 1

    def first_trade_id_from(self, t: int) -> int:
        """Id of the first synthetic trade at or after ``t``."""
        i = max(0, int(np.searchsorted(self.ts, t, side="right")) - 1)
        k = 0
        if t > self.ts[i]:
            k = -(-(t - int(self.ts[i])) * self.trades_per_bar // self.tf)
        if k >= self.trades_per_bar:
            i, k = i + 1, 0
        return i * self.trades_per_bar + int(k) + 1

    def _synthetic(self, after_ms: int, upto_ms: int, limit: int, oldest: bool) -> list[dict]:
        if upto_ms <= after_ms:
            return []
        first = max(1, self.first_trade_id_from(after_ms + 1))
        last = self.last_trade_id(upto_ms)
        if oldest:
            last = min(last, first + limit - 1)
        else:
            first = max(first, last - limit + 1)
        return [self.trade(tid) for tid in range(first, last + 1)]

    def trades(self, after_ms: int, upto_ms: int, limit: int, *, oldest: bool = False) -> list[dict]:
        """Trades with ``after_ms < time <= upto_ms`` in time order: at most ``limit``, the latest ones (or the
        oldest with ``oldest=True``). Synthetic, except inside the recorded tape, where the recorded ones."""
        if not len(self.rt_ts) or upto_ms < self.rt_ts[0] or after_ms >= self.rt_ts[-1]:
            return self._synthetic(after_ms, upto_ms, limit, oldest)
        f, last = int(self.rt_ts[0]), int(self.rt_ts[-1])
        j0 = int(np.searchsorted(self.rt_ts, after_ms, side="right"))
        j1 = int(np.searchsorted(self.rt_ts, upto_ms, side="right"))
        pieces = [
            self._synthetic(after_ms, min(upto_ms, f - 1), limit, oldest),
            [
                self._tape_trade(j)
                for j in (range(j0, min(j1, j0 + limit)) if oldest else range(max(j0, j1 - limit), j1))
            ],
            self._synthetic(max(after_ms, last), upto_ms, limit, oldest),
        ]
        out = [t for piece in pieces for t in piece]
        return out[:limit] if oldest else out[-limit:]

    def trade_time(self, tid: int) -> int | None:
        """When trade ``tid`` (recorded or synthetic) happened; None for an unknown id."""
        if len(self.rt_id):
            hit = np.flatnonzero(self.rt_id == tid)
            if len(hit):
                return int(self.rt_ts[hit[0]])
        if 1 <= tid <= len(self.ts) * self.trades_per_bar:
            return self._trade_time(tid)[1]
        return None

    # ------------------------------------------------------------------ synthetic book
    def book(
        self, uid: int, params: BookParams
    ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """(bids, asks) of the book with update id ``uid`` (replay time ``uid * step_ms``): a recorded snapshot
        where one is in force, else the synthetic book around the current price."""
        recorded = self.recorded_book(uid * params.step_ms)
        if recorded is not None:
            return recorded
        p = self.price(uid * params.step_ms)
        if p is None:
            return [], []
        bids, asks = [], []
        for j in range(params.levels):
            q = max(self.step, self.round_qty(params.qty * (1 + j / 2)))
            bid = self.round_price(p - j * params.level_ticks * self.tick)
            ask = self.round_price(p + (params.spread_ticks + j * params.level_ticks) * self.tick)
            if bid > 0:
                bids.append((bid, q))
            asks.append((ask, q))
        return bids, asks


def _as_frame(candles: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """Candles (a store frame with a DatetimeIndex, or a frame with an epoch-ms ``timestamp`` column)
    -> a frame with ``timestamp`` (ms) and OHLCV columns, sorted, duplicates dropped."""
    need = {"open", "high", "low", "close", "volume"}
    missing = need - set(candles.columns)
    if missing:
        raise ValueError(f"replay exchange: candles for {symbol} lack column(s) {sorted(missing)}")
    if "timestamp" in candles.columns:
        ts = candles["timestamp"].to_numpy(dtype=np.int64)
    elif isinstance(candles.index, pd.DatetimeIndex):
        idx = candles.index
        idx = idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx
        ts = idx.as_unit("ms").asi8.astype(np.int64)
    else:
        raise ValueError(
            f"replay exchange: candles for {symbol} need a 'timestamp' column (epoch ms) or a DatetimeIndex"
        )
    out = pd.DataFrame({"timestamp": ts, **{c: candles[c].to_numpy(dtype=float) for c in sorted(need)}})
    bad = ~np.isfinite(out[sorted(need)].to_numpy()).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"replay exchange: candles for {symbol} have a non-finite value in row {row}")
    return out.sort_values("timestamp").drop_duplicates("timestamp", keep="last").reset_index(drop=True)
