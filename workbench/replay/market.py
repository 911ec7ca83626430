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

    def price(self, t: int) -> float | None:
        """The current price at ``t``: the path rounded to the tick; None before the data."""
        p = self.raw_price(t)
        return None if p is None else self.round_price(p)

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
        """The first time in ``[a, b]`` at which the path is at or through ``level`` (at or below it for a
        buy, at or above it for a sell), or None."""
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
        p = self.price(t)
        assert p is not None
        prev = self.price(self._trade_time(tid - 1)[1]) if tid > 1 else p
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

    def trades(self, after_ms: int, upto_ms: int, limit: int) -> list[dict]:
        """Synthetic trades with ``after_ms < time <= upto_ms``, oldest first, at most the last ``limit``."""
        last = self.last_trade_id(upto_ms)
        first = max(1, self.first_trade_id_from(after_ms + 1), last - limit + 1)
        return [self.trade(tid) for tid in range(first, last + 1)]

    # ------------------------------------------------------------------ synthetic book
    def book(
        self, uid: int, params: BookParams
    ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """(bids, asks) of the synthetic book with update id ``uid`` (replay time ``uid * step_ms``)."""
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
