"""Causal chart-pattern recognition: swing points, chart patterns, per-bar pattern features and an honest
in-sample / out-of-sample evaluation against the base rate.

Every pattern is reported at the bar where it becomes knowable from ``candles[:t+1]`` (the close of bar
``t``), never earlier. Running any function here on ``candles.iloc[:k]`` gives exactly the rows of the run on
the full candles whose detection ``time`` is before ``candles.index[k]``.

>>> sw = swings(candles, order=5)                        # fractal swings, confirmed 5 bars after the pivot
>>> zz = swings(candles, atr_mult=3.0)                   # zig-zag: reversal of 3 ATR confirms the pivot
>>> found = detect_chart_patterns(candles, breakout=True)
>>> X = pattern_features(candles)                         # per-bar +1/-1/0 columns, chart + TA-Lib candles
>>> table = evaluate_patterns(candles, horizons=(1, 6, 24))   # 70/30 split, per pattern vs. all bars

**Swings** (:func:`swings`). Fractal mode (default): a swing high at bar ``i`` has ``high[i]`` strictly above
the ``order`` highs before it and at least the ``order`` highs after it (a plateau's first bar), and is
confirmed at bar ``i + order``; swing lows mirror it. Zig-zag mode (``atr_mult`` or ``pct``): the running
extreme of the current leg becomes a swing once price reverses from it by the threshold (``atr_mult * ATR``
at the confirming bar, or ``pct`` of the extreme's price), confirmed at the bar that completes the reversal
(the first leg, from the first bar, only sets the direction and gives no swing).

**Chart patterns** (:func:`detect_chart_patterns`) are read off the alternating sequence of confirmed swings
(two consecutive highs keep the higher one, two lows the lower one), re-examined each time a swing is
confirmed. Sizes are relative to the pattern's own height, so the defaults suit any timeframe; the minimum
height is in ATRs at the detection bar (see :class:`PatternConfig`):

- ``double_top`` (-1) / ``double_bottom`` (+1): swings H1, L, H2 with ``|H1 - H2| <= tol * height``,
  height = mean(H1, H2) - L. Neckline: the level of L.
- ``head_and_shoulders`` (-1) / ``inverse_head_and_shoulders`` (+1): swings LS, T1, HEAD, T2, RS; the head
  above the higher shoulder by ``margin * height``, ``|LS - RS| <= tol * height``, ``|T1 - T2| <=
  neck_tol * height``, both shoulders above the neckline by ``margin * height``; height = head minus the
  neckline (the line through T1 and T2) at the head. Neckline: that line.
- ``ascending_triangle`` (+1) / ``descending_triangle`` (-1) / ``symmetrical_triangle`` (breakout side):
  least-squares lines through the highs and through the lows of the last ``triangle_swings`` (>= 4)
  swings; a line whose change over the window is within ``tol * height`` is flat, otherwise rising or
  falling (height = the gap between the lines at the window's first swing). Ascending: flat highs and rising
  lows; descending: falling highs and flat lows; symmetrical: falling highs and rising lows. A symmetrical
  triangle has no direction of its own, so it is always breakout-defined: detected at the first close above
  the upper line (+1) or below the lower line (-1).
- ``bull_flag`` (+1) / ``bear_flag`` (-1): breakout-defined. A pole of at least ``pole_atr`` ATRs within
  ``pole_bars`` bars ending at the pole's extreme (bar ``e``), then ``flag_min..flag_max`` bars that stay
  inside the pole (no new extreme, retracing at most ``max_retrace`` of the pole) in a channel (least-squares
  line through the bars' mid prices, sloping against the pole or flat, no wider than ``flag_width`` of the
  pole); detected at the first close beyond the channel in the pole's direction. After a flag no flag of the
  same direction is reported for ``flag_max`` bars (one signal per flag).

With ``breakout=False`` (default) the swing patterns are detected when their last swing is confirmed; with
``breakout=True`` they wait for the first close beyond the neckline / trendline in the pattern's direction
(from the confirming bar's own close on, at most ``break_window`` bars, default the pattern's own width), and
are dropped if price first closes beyond the other side (above the top, below the rising support, ...). One
pattern of each kind waits at a time: a newer one replaces it. A formation breaks out once: a pattern that
shares swings with one of its kind already broken in the same direction is not reported again.

**Evaluation** (:func:`evaluate_patterns`): direction-adjusted forward returns ``d * (close[t+h] / close[t]
- 1)`` from the detection bar's close, in-sample (detection and ``t + h`` before the split: no label crosses
it) and out-of-sample (detection at or after the split). t-statistics treat detections as independent; with
overlapping horizons and clustered signals they overstate significance, so read them as rough guides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from workbench.features.indicators import atr as _atr
from workbench.features.indicators import candle_patterns
from workbench.types import to_ms

__all__ = [
    "CHART_PATTERNS",
    "PatternConfig",
    "detect_chart_patterns",
    "evaluate_patterns",
    "pattern_features",
    "swings",
]

CHART_PATTERNS: tuple[str, ...] = (
    "double_top",
    "double_bottom",
    "head_and_shoulders",
    "inverse_head_and_shoulders",
    "ascending_triangle",
    "descending_triangle",
    "symmetrical_triangle",
    "bull_flag",
    "bear_flag",
)

_PATTERN_COLUMNS = (
    "time",
    "pattern",
    "direction",
    "start",
    "end",
    "level",
    "height",
    "target",
    "breakout",
    "p1",
    "p2",
    "p3",
    "p4",
    "p5",
)


@dataclass(frozen=True, slots=True)
class PatternConfig:
    """Parameters of the chart-pattern detectors (every function also takes them as keyword overrides).

    Swings: ``order`` (fractal half-width; a swing is confirmed ``order`` bars after its pivot), or a
    zig-zag with ``atr_mult`` (reversal of ``atr_mult * ATR(atr_period)``) or ``pct`` (reversal of ``pct``
    of the extreme's price, e.g. 0.02); at most one of the two. ``atr_period`` also sizes ``min_height_atr``
    and the flag pole.

    Shapes (fractions of the pattern's own height): ``tol`` — peaks of a double top, shoulders of a head
    and shoulders, and the flatness of a triangle's line (default 0.2); ``neck_tol`` — the two troughs of a
    head and shoulders (0.3); ``margin`` — head above the higher shoulder, shoulders above the neckline
    (0.15). ``min_height_atr``: a pattern's height must be at least this many ATRs at the detection bar (2).
    ``triangle_swings``: swings in a triangle's window (>= 4).

    ``breakout``: wait for the close beyond the neckline / trendline (see the module docstring);
    ``break_window``: at most this many bars to wait (None: the pattern's width in bars).

    Flags: ``pole_bars`` (the pole spans at most this many bars, 10), ``pole_atr`` (pole height >= this many
    ATRs at the pole's end, 4), ``flag_min`` / ``flag_max`` (flag length in bars, 3..12), ``max_retrace``
    (the flag retraces at most this fraction of the pole, 0.5), ``flag_width`` (channel height at most this
    fraction of the pole, 0.5).
    """

    order: int = 5
    atr_mult: float | None = None
    pct: float | None = None
    atr_period: int = 14
    tol: float = 0.2
    neck_tol: float = 0.3
    margin: float = 0.15
    min_height_atr: float = 2.0
    triangle_swings: int = 4
    breakout: bool = False
    break_window: int | None = None
    pole_bars: int = 10
    pole_atr: float = 4.0
    flag_min: int = 3
    flag_max: int = 12
    max_retrace: float = 0.5
    flag_width: float = 0.5

    def __post_init__(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"PatternConfig: {msg}")

        if int(self.order) != self.order or self.order < 1:
            raise bad(f"order must be an integer >= 1, got {self.order!r}")
        if self.atr_mult is not None and self.pct is not None:
            raise bad("give atr_mult or pct for a zig-zag, not both")
        if self.atr_mult is not None and not (np.isfinite(self.atr_mult) and self.atr_mult > 0):
            raise bad(f"atr_mult must be a positive number, got {self.atr_mult!r}")
        if self.pct is not None and not (np.isfinite(self.pct) and 0 < self.pct < 1):
            raise bad(f"pct must be in (0, 1), got {self.pct!r}")
        if int(self.atr_period) != self.atr_period or self.atr_period < 1:
            raise bad(f"atr_period must be an integer >= 1, got {self.atr_period!r}")
        for name in ("tol", "neck_tol", "margin", "min_height_atr", "pole_atr"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise bad(f"{name} must be a finite number >= 0, got {v!r}")
        for name in ("max_retrace", "flag_width"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise bad(f"{name} must be a positive number, got {v!r}")
        if int(self.triangle_swings) != self.triangle_swings or self.triangle_swings < 4:
            raise bad(f"triangle_swings must be an integer >= 4, got {self.triangle_swings!r}")
        if self.break_window is not None and (
            int(self.break_window) != self.break_window or self.break_window < 1
        ):
            raise bad(f"break_window must be None or an integer >= 1, got {self.break_window!r}")
        if int(self.pole_bars) != self.pole_bars or self.pole_bars < 1:
            raise bad(f"pole_bars must be an integer >= 1, got {self.pole_bars!r}")
        if not (2 <= self.flag_min <= self.flag_max) or int(self.flag_min) != self.flag_min:
            raise bad(f"need integers 2 <= flag_min <= flag_max, got {self.flag_min!r}, {self.flag_max!r}")


def _config(config: PatternConfig | None, overrides: dict[str, Any]) -> PatternConfig:
    cfg = config if config is not None else PatternConfig()
    if not overrides:
        return cfg
    fields = {f.name for f in dataclasses.fields(PatternConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown pattern parameter(s) {unknown}; PatternConfig fields: {sorted(fields)}")
    return dataclasses.replace(cfg, **overrides)


def _check_candles(candles: pd.DataFrame) -> None:
    if not isinstance(candles, pd.DataFrame):
        raise ValueError(f"expected Candles (a DataFrame), got {type(candles).__name__}")
    missing = [c for c in ("open", "high", "low", "close") if c not in candles.columns]
    if missing:
        raise ValueError(f"candles lack column(s) {missing}")
    if not isinstance(candles.index, pd.DatetimeIndex):
        raise ValueError("candles must be indexed by a DatetimeIndex (bar-open times)")


def _arrays(candles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.ascontiguousarray(candles[k].to_numpy("float64")) for k in ("high", "low", "close"))  # type: ignore[return-value]


def _atr_array(candles: pd.DataFrame, period: int) -> np.ndarray:
    if len(candles) == 0:
        return np.empty(0)
    return np.asarray(_atr(candles, period), dtype="float64")


# --------------------------------------------------------------------------------------------- swings


def _fractal_swings(high: np.ndarray, low: np.ndarray, order: int) -> list[tuple[int, int, int, float]]:
    """(pivot, confirm, kind, price) of fractal swings; kind +1 high, -1 low."""
    n = len(high)
    out: list[tuple[int, int, int, float]] = []
    if n < 2 * order + 1:
        return out
    w = 2 * order + 1
    hw = sliding_window_view(high, w)  # row j covers pivot i = j + order
    lw = sliding_window_view(low, w)
    mid_h, mid_l = hw[:, order], lw[:, order]
    is_h = (mid_h > hw[:, :order].max(axis=1)) & (mid_h >= hw[:, order + 1 :].max(axis=1))
    is_l = (mid_l < lw[:, :order].min(axis=1)) & (mid_l <= lw[:, order + 1 :].min(axis=1))
    for j in np.flatnonzero(is_h | is_l):
        i = int(j) + order
        if is_h[j]:
            out.append((i, i + order, 1, float(high[i])))
        if is_l[j]:
            out.append((i, i + order, -1, float(low[i])))
    return out


def _zigzag_swings(
    high: np.ndarray, low: np.ndarray, atr: np.ndarray | None, mult: float | None, pct: float | None
) -> list[tuple[int, int, int, float]]:
    """Zig-zag pivots, each confirmed at the bar whose reversal from it reaches the threshold."""
    n = len(high)
    out: list[tuple[int, int, int, float]] = []

    def thr(t: int, price: float) -> float:
        return pct * price if pct is not None else mult * atr[t]  # type: ignore[operator,index]

    trend, hi, lo = 0, -1, -1
    for t in range(n):
        if pct is None and not np.isfinite(atr[t]):  # type: ignore[index]
            continue  # ATR warm-up: no tracking yet
        if trend == 0:
            if hi < 0:
                hi = lo = t
                continue
            new_hi, new_lo = high[t] > high[hi], low[t] < low[lo]
            if new_hi:
                hi = t
            if new_lo:
                lo = t
            # the first leg only sets the direction: its start has no reversal before it, so no swing
            down = hi < t and high[hi] - low[t] >= thr(t, high[hi])
            up = lo < t and high[t] - low[lo] >= thr(t, low[lo])
            if down and (not up or hi <= lo):
                trend, lo = -1, hi + 1 + int(np.argmin(low[hi + 1 : t + 1]))
            elif up:
                trend, hi = 1, lo + 1 + int(np.argmax(high[lo + 1 : t + 1]))
        elif trend == 1:
            if high[t] > high[hi]:
                hi = t
            elif high[hi] - low[t] >= thr(t, high[hi]):
                out.append((hi, t, 1, float(high[hi])))
                trend, lo = -1, hi + 1 + int(np.argmin(low[hi + 1 : t + 1]))
        else:
            if low[t] < low[lo]:
                lo = t
            elif high[t] - low[lo] >= thr(t, low[lo]):
                out.append((lo, t, -1, float(low[lo])))
                trend, hi = 1, lo + 1 + int(np.argmax(high[lo + 1 : t + 1]))
    return out


def _swing_list(
    candles: pd.DataFrame, cfg: PatternConfig, atr: np.ndarray
) -> list[tuple[int, int, int, float]]:
    high, low, _ = _arrays(candles)
    if cfg.atr_mult is None and cfg.pct is None:
        sw = _fractal_swings(high, low, int(cfg.order))
    else:
        sw = _zigzag_swings(high, low, atr, cfg.atr_mult, cfg.pct)
    sw.sort(key=lambda s: (s[1], s[0], -s[2]))
    return sw


def swings(
    candles: pd.DataFrame,
    *,
    order: int = 5,
    atr_mult: float | None = None,
    pct: float | None = None,
    atr_period: int = 14,
) -> pd.DataFrame:
    """Confirmed swing points, in the order they become known.

    Fractal mode (default): a swing high at bar ``i`` needs ``high[i]`` strictly above the ``order`` highs
    before it and >= the ``order`` highs after it; it is confirmed at bar ``i + order`` (lows mirror it).
    Zig-zag mode: ``atr_mult`` (reversal of ``atr_mult * ATR(atr_period)`` at the confirming bar) or ``pct``
    (reversal of ``pct`` of the extreme's price) from the current leg's extreme; ``order`` is then ignored.

    Columns: ``time`` (confirmation bar: when the swing becomes known), ``pivot_time`` (the extreme's bar),
    ``kind`` (``'high'`` / ``'low'``), ``price`` (the high / low at the pivot), ``pivot_bar`` and ``bar``
    (0-based positions of the pivot and the confirmation).
    """
    _check_candles(candles)
    cfg = PatternConfig(order=order, atr_mult=atr_mult, pct=pct, atr_period=atr_period)
    atr = _atr_array(candles, cfg.atr_period) if cfg.atr_mult is not None else np.empty(0)
    sw = _swing_list(candles, cfg, atr)
    piv = np.array([s[0] for s in sw], dtype="int64")
    conf = np.array([s[1] for s in sw], dtype="int64")
    return pd.DataFrame(
        {
            "time": candles.index.take(conf),
            "pivot_time": candles.index.take(piv),
            "kind": pd.Series(["high" if s[2] == 1 else "low" for s in sw], dtype=str),
            "price": np.array([s[3] for s in sw], dtype="float64"),
            "pivot_bar": piv,
            "bar": conf,
        }
    )


# ------------------------------------------------------------------------------------ chart patterns


@dataclass(slots=True)
class _Pending:
    """A swing pattern waiting for its breakout. Lines are ``a + b * bar``."""

    name: str
    dirs: tuple[int, ...]  # break directions that emit; the other side cancels
    upper: tuple[float, float]
    lower: tuple[float, float]
    start: int
    end: int
    height: float
    prices: tuple[float, ...]
    expire: int


def _line(p: tuple[float, float], t: int) -> float:
    return p[0] + p[1] * t


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares line ``a + b * x``."""
    if len(x) == 2:
        b = (y[1] - y[0]) / (x[1] - x[0])
        return float(y[0] - b * x[0]), float(b)
    b, a = np.polyfit(x.astype("float64"), y, 1)
    return float(a), float(b)


def _swing_patterns(
    alt: list[tuple[int, int, float]], t: int, atr_t: float, cfg: PatternConfig
) -> list[_Pending]:
    """Patterns completed by the last swing of ``alt`` (alternating (pivot, kind, price)), confirmed at t."""
    found: list[_Pending] = []
    if not np.isfinite(atr_t):
        return found
    min_h = cfg.min_height_atr * atr_t
    last_kind = alt[-1][1]
    d = -last_kind  # a top pattern completes on a high and is bearish
    if len(alt) >= 3:
        (p1, _, x1), (_, _, x2), (p3, _, x3) = alt[-3:]
        height = (x1 + x3) / 2 - x2 if last_kind == 1 else x2 - (x1 + x3) / 2
        if height >= min_h and height > 0 and abs(x1 - x3) <= cfg.tol * height:
            ext = max(x1, x3) if last_kind == 1 else min(x1, x3)
            up, lo = ((ext, 0.0), (x2, 0.0)) if last_kind == 1 else ((x2, 0.0), (ext, 0.0))
            name = "double_top" if last_kind == 1 else "double_bottom"
            found.append(_Pending(name, (d,), up, lo, p1, p3, height, (x1, x2, x3), p3 - p1))
    if len(alt) >= 5:
        (pa, _, ls), (pb, _, t1), (pc, _, hd), (pd_, _, t2), (pe, _, rs) = alt[-5:]
        s = float(last_kind)  # work on the "top" orientation: multiply prices by s
        neck = _fit(np.array([pb, pd_]), np.array([t1, t2]))
        height = s * (hd - _line(neck, pc))
        if height >= min_h and height > 0:
            ok = (
                s * hd - max(s * ls, s * rs) >= cfg.margin * height
                and abs(ls - rs) <= cfg.tol * height
                and abs(t1 - t2) <= cfg.neck_tol * height
                and min(s * ls, s * rs) - max(s * t1, s * t2) >= cfg.margin * height
            )
            if ok:
                name = "head_and_shoulders" if last_kind == 1 else "inverse_head_and_shoulders"
                flat = (hd, 0.0)
                up, lo = (flat, neck) if last_kind == 1 else (neck, flat)
                found.append(_Pending(name, (d,), up, lo, pa, pe, height, (ls, t1, hd, t2, rs), pe - pa))
    k = int(cfg.triangle_swings)
    if len(alt) >= k:
        win = alt[-k:]
        hx = np.array([p for p, kd, _ in win if kd == 1])
        hy = np.array([x for _, kd, x in win if kd == 1])
        lx = np.array([p for p, kd, _ in win if kd == -1])
        ly = np.array([x for _, kd, x in win if kd == -1])
        upper, lower = _fit(hx, hy), _fit(lx, ly)
        first, lastp = win[0][0], win[-1][0]
        span = lastp - first
        height = _line(upper, first) - _line(lower, first)
        if height >= min_h and height > 0 and span > 0:
            flat = cfg.tol * height
            dh, dl = upper[1] * span, lower[1] * span
            name, dirs = None, ()
            if abs(dh) <= flat and dl > flat:
                name, dirs = "ascending_triangle", (1,)
            elif dh < -flat and abs(dl) <= flat:
                name, dirs = "descending_triangle", (-1,)
            elif dh < -flat and dl > flat:
                name, dirs = "symmetrical_triangle", (1, -1)
            if name is not None:
                prices = tuple(x for _, _, x in win[-5:])
                found.append(_Pending(name, dirs, upper, lower, first, lastp, height, prices, span))
    return found


def _flag_candidates(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray, cfg: PatternConfig
) -> list[tuple[int, int, int, int, int, float, float, float]]:
    """(t, direction, pole_start, pole_end, flag_end, level, height, pole_start_price) per breakout bar."""
    n = len(close)
    pb = int(cfg.pole_bars)
    best: dict[tuple[int, int], tuple[int, int, int, int, int, float, float, float]] = {}
    mid = (high + low) / 2
    for m in range(int(cfg.flag_min), int(cfg.flag_max) + 1):
        t0 = m + pb  # first t with e = t - m - 1 >= pb - 1
        if t0 >= n:
            break
        t = np.arange(t0, n)
        e = t - m - 1
        # pole windows ending at e
        ph_w = sliding_window_view(high, pb)[e - pb + 1]
        pl_w = sliding_window_view(low, pb)[e - pb + 1]
        # flag windows: bars e+1 .. t-1
        fh = sliding_window_view(high, m)[e + 1]
        fl = sliding_window_view(low, m)[e + 1]
        fm = sliding_window_view(mid, m)[e + 1]
        x = np.arange(m, dtype="float64")
        xc = x - x.mean()
        b = (fm - fm.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
        a = fm.mean(axis=1) - b * x.mean()
        fit = a[:, None] + b[:, None] * x
        up_off = (fh - fit).max(axis=1)
        lo_off = (fit - fl).max(axis=1)
        width = up_off + lo_off
        at = atr[e]
        with np.errstate(invalid="ignore"):
            for d in (1, -1):
                if d == 1:
                    top = high[e]
                    pole_ok = top >= ph_w.max(axis=1)
                    base = pl_w.min(axis=1)
                    start = e - pb + 1 + pl_w.argmin(axis=1)
                    h = top - base
                    inside = (fh.max(axis=1) <= top) & (fl.min(axis=1) >= top - cfg.max_retrace * h)
                    slope_ok = b <= 0
                    level = a + b * m + up_off
                    brk = close[t] > level
                else:
                    top = low[e]
                    pole_ok = top <= pl_w.min(axis=1)
                    base = ph_w.max(axis=1)
                    start = e - pb + 1 + ph_w.argmax(axis=1)
                    h = base - top
                    inside = (fl.min(axis=1) >= top) & (fh.max(axis=1) <= top + cfg.max_retrace * h)
                    slope_ok = b >= 0
                    level = a + b * m - lo_off
                    brk = close[t] < level
                ok = (
                    pole_ok
                    & (h >= cfg.pole_atr * at)
                    & (h > 0)
                    & inside
                    & slope_ok
                    & (width <= cfg.flag_width * h)
                    & brk
                )
                for j in np.flatnonzero(ok):
                    key = (int(t[j]), d)
                    if key not in best:  # the shortest flag wins
                        best[key] = (
                            int(t[j]),
                            d,
                            int(start[j]),
                            int(e[j]),
                            int(t[j]) - 1,
                            float(level[j]),
                            float(h[j]),
                            float(base[j]),
                        )
    out: list[tuple[int, int, int, int, int, float, float, float]] = []
    last = {1: -(10**9), -1: -(10**9)}
    for key in sorted(best):
        row = best[key]
        if row[0] - last[row[1]] > cfg.flag_max:
            out.append(row)
            last[row[1]] = row[0]
    return out


def _detect(candles: pd.DataFrame, cfg: PatternConfig) -> pd.DataFrame:
    high, low, close = _arrays(candles)
    n = len(close)
    atr = _atr_array(candles, cfg.atr_period)
    sw = _swing_list(candles, cfg, atr)
    by_bar: dict[int, list[tuple[int, int, int, float]]] = {}
    for s in sw:
        by_bar.setdefault(s[1], []).append(s)
    rows: list[tuple[Any, ...]] = []

    def emit(t: int, name: str, d: int, start: int, end: int, level: float, height: float, brk: bool, prices):
        p = [*prices, *([np.nan] * (5 - len(prices)))][:5]
        rows.append((t, name, d, start, end, level, height, level + d * height, brk, *p))

    broken: dict[tuple[str, int], int] = {}  # (pattern, direction) -> last pivot of the last breakout

    def settle(p: _Pending, t: int) -> bool:
        """Emit ``p`` if bar t closes beyond it in one of its directions; True when ``p`` is done."""
        up, lo = _line(p.upper, t), _line(p.lower, t)
        if t > p.expire or up < lo:
            return True
        d = 1 if close[t] > up else -1 if close[t] < lo else 0
        if d == 0:
            return False
        # one breakout per formation: none from a pattern sharing swings with one already broken that way
        if d in p.dirs and p.start > broken.get((p.name, d), -1):
            emit(t, p.name, d, p.start, p.end, up if d == 1 else lo, p.height, True, p.prices)
            broken[(p.name, d)] = p.end
        return True

    alt: list[tuple[int, int, float]] = []
    pending: dict[str, _Pending] = {}
    for t in range(n):
        for name in list(pending):
            if settle(pending[name], t):
                del pending[name]
        new = by_bar.get(t)
        if not new:
            continue
        if len(new) > 1 and alt and alt[-1][1] == 1:
            new = sorted(new, key=lambda s: s[2])  # outside-bar pivot: keep the sequence alternating
        for piv, _, kind, price in new:
            if alt and alt[-1][1] == kind:
                if kind * price <= kind * alt[-1][2]:
                    continue  # a lesser extreme of the same kind: not a new swing of the sequence
                alt[-1] = (piv, kind, price)
            else:
                alt.append((piv, kind, price))
            if len(alt) > max(8, int(cfg.triangle_swings)):
                del alt[0]
            for p in _swing_patterns(alt, t, atr[t], cfg):
                if cfg.breakout or len(p.dirs) > 1:
                    wait = cfg.break_window if cfg.break_window is not None else max(p.expire, 1)
                    p.expire = t + int(wait)
                    pending.pop(p.name, None)  # a newer pattern of the same kind replaces a waiting one
                    if not settle(p, t):  # the close of the confirming bar may already break out
                        pending[p.name] = p
                else:
                    d = p.dirs[0]
                    level = _line(p.lower if d == -1 else p.upper, t)
                    emit(t, p.name, d, p.start, p.end, level, p.height, False, p.prices)
    for t, d, s, e, fe, level, h, base in _flag_candidates(high, low, close, atr, cfg):
        name = "bull_flag" if d == 1 else "bear_flag"
        emit(t, name, d, s, fe, level, h, True, (base, high[e] if d == 1 else low[e]))
    rows.sort(key=lambda r: (r[0], CHART_PATTERNS.index(r[1]), r[3]))
    return _rows_frame(candles.index, rows)


def _rows_frame(index: pd.DatetimeIndex, rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in _PATTERN_COLUMNS]
    data: dict[str, Any] = {}
    for name, vals in zip(_PATTERN_COLUMNS, cols, strict=True):
        if name in ("time", "start", "end"):
            data[name] = index.take(np.asarray(vals, dtype="int64"))
        elif name == "pattern":
            data[name] = pd.Series(list(vals), dtype=str)
        elif name == "direction":
            data[name] = np.asarray(vals, dtype="int8")
        elif name == "breakout":
            data[name] = np.asarray(vals, dtype="bool")
        else:
            data[name] = np.asarray(vals, dtype="float64")
    df = pd.DataFrame(data)
    for name in ("time", "start", "end"):
        df[name] = pd.DatetimeIndex(df[name]).rename(None)
    return df


def detect_chart_patterns(
    candles: pd.DataFrame,
    config: PatternConfig | None = None,
    *,
    patterns: Iterable[str] | None = None,
    **params: Any,
) -> pd.DataFrame:
    """Chart patterns found causally in ``candles`` (see the module docstring for the definitions).

    ``config`` / ``**params``: :class:`PatternConfig` fields (``order=3, tol=0.1, breakout=True``, ...).
    ``patterns``: a subset of :data:`CHART_PATTERNS` (default all).

    One row per detection, sorted by ``time``: ``time`` (detection bar: the last swing's confirmation, or
    the breakout bar), ``pattern``, ``direction`` (+1 bullish, -1 bearish), ``start`` / ``end`` (first and
    last pivot; for flags the pole's start and the flag's last bar), ``level`` (neckline / trendline /
    channel edge at the detection bar), ``height`` (pattern height in price), ``target`` (the measured
    move: ``level + direction * height``), ``breakout`` (True when detected by a close beyond ``level``),
    ``p1..p5`` (the swing prices, oldest first; flags: pole start, pole end; NaN where unused).
    """
    _check_candles(candles)
    cfg = _config(config, params)
    df = _detect(candles, cfg)
    if patterns is not None:
        chosen = [patterns] if isinstance(patterns, str) else list(patterns)
        unknown = sorted(set(chosen) - set(CHART_PATTERNS))
        if unknown:
            raise ValueError(f"unknown chart pattern(s) {unknown}; known: {', '.join(CHART_PATTERNS)}")
        df = df[df["pattern"].isin(chosen)].reset_index(drop=True)
    return df


# ------------------------------------------------------------------------------------------- features


def pattern_features(
    candles: pd.DataFrame,
    config: PatternConfig | None = None,
    *,
    candlesticks: bool | Sequence[str] = True,
    **params: Any,
) -> pd.DataFrame:
    """Per-bar pattern signals for ML, on the candles' index (int8, causal).

    One column per chart pattern (:data:`CHART_PATTERNS`): the pattern's direction (+1 / -1) on its
    detection bars, 0 elsewhere (the sign of the sum if one pattern is detected twice on a bar). Then, with
    ``candlesticks`` (True: all 61 TA-Lib patterns; or a list of names such as ``['doji', 'engulfing']``),
    ``cdl_<name>``: the sign of :func:`workbench.features.candle_patterns` (TA-Lib's ±100/±80/±200 become
    ±1). ``config`` / ``**params``: :class:`PatternConfig` fields.
    """
    _check_candles(candles)
    cfg = _config(config, params)
    det = _detect(candles, cfg)
    n = len(candles)
    pos = candles.index.get_indexer(det["time"])
    out: dict[str, np.ndarray] = {}
    for name in CHART_PATTERNS:
        sel = (det["pattern"] == name).to_numpy()
        acc = np.zeros(n, dtype="int64")
        np.add.at(acc, pos[sel], det["direction"].to_numpy()[sel].astype("int64"))
        out[name] = np.sign(acc).astype("int8")
    frame = pd.DataFrame(out, index=candles.index)
    if candlesticks is not False:
        names = None if candlesticks is True else list(candlesticks)
        cdl = candle_patterns(candles, names) if n else pd.DataFrame(index=candles.index)
        cdl = np.sign(cdl).astype("int8").add_prefix("cdl_")
        frame = pd.concat([frame, cdl], axis=1)
    return frame


# ----------------------------------------------------------------------------------------- evaluation


def _split_pos(index: pd.DatetimeIndex, split: Any) -> int:
    n = len(index)
    if split is None:
        split = 0.7
    if isinstance(split, float) and not isinstance(split, bool):
        if not 0 < split < 1:
            raise ValueError(f"split as a fraction must be in (0, 1), got {split!r}")
        return int(n * split)
    ts = pd.Timestamp(to_ms(split, what="split"), unit="ms", tz="UTC")
    return int(index.searchsorted(ts, side="left"))


def _stats(r: np.ndarray) -> dict[str, float]:
    """count, hit rate, mean, median and t-stat of direction-adjusted returns ``r``."""
    k = len(r)
    if k == 0:
        return {"count": 0, "hit_rate": np.nan, "mean": np.nan, "median": np.nan, "t_stat": np.nan}
    sd = float(np.std(r, ddof=1)) if k > 1 else np.nan
    mean = float(np.mean(r))
    t = mean / (sd / np.sqrt(k)) if k > 1 and sd > 0 else np.nan
    return {
        "count": k,
        "hit_rate": float(np.mean(r > 0)),
        "mean": mean,
        "median": float(np.median(r)),
        "t_stat": t,
    }


def evaluate_patterns(
    candles: pd.DataFrame,
    horizons: Sequence[int] = (1, 6, 24),
    split: float | str | int | pd.Timestamp | None = None,
    config: PatternConfig | None = None,
    *,
    candlesticks: bool | Sequence[str] = True,
    **params: Any,
) -> pd.DataFrame:
    """How well each pattern's direction predicts the forward return, in- and out-of-sample.

    For a detection at bar ``t`` with direction ``d`` and horizon ``h``: ``r = d * (close[t+h] / close[t] -
    1)`` (from the detection bar's close, i.e. tradable at that close). ``split``: None (70/30 by bar
    count), a float fraction, or a time (ISO string, Timestamp, datetime or epoch ms as int; bars at or
    after it are out of sample). In-sample keeps detections whose
    ``t + h`` is before the split (no forward return crosses it); out-of-sample takes detections at or after
    the split with ``t + h`` inside the data.

    Rows: ``period`` (``in_sample`` / ``out_of_sample``), ``kind`` (``base`` / ``chart`` / ``candle``),
    ``pattern`` (chart names, ``cdl_<name>`` for TA-Lib candlesticks with the sign of TA-Lib's value as
    direction, ``all_bars`` for the base rate: every bar, long), ``horizon``; columns ``count``,
    ``hit_rate`` (share with ``r > 0``), ``mean``, ``median``, ``t_stat`` (mean / (std / sqrt(count)),
    detections treated as independent: overstated for overlapping horizons), ``base_hit_rate`` and
    ``base_mean`` (what random bars of the period would give with the pattern's mix of long and short
    signals), ``edge`` (``hit_rate - base_hit_rate``) and ``edge_z`` (the edge in binomial standard errors,
    ``edge / sqrt(base_hit_rate * (1 - base_hit_rate) / count)``; same independence caveat). Only patterns
    that occur in the candles appear.
    """
    _check_candles(candles)
    hs = [int(h) for h in horizons]
    if not hs or any(h < 1 for h in hs):
        raise ValueError(f"horizons must be integers >= 1, got {horizons!r}")
    cfg = _config(config, params)
    n = len(candles)
    cut = _split_pos(candles.index, split)
    close = candles["close"].to_numpy("float64")
    det = _detect(candles, cfg)
    signals: list[tuple[str, str, np.ndarray, np.ndarray]] = []  # kind, name, positions, directions
    pos = candles.index.get_indexer(det["time"])
    for name in CHART_PATTERNS:
        sel = (det["pattern"] == name).to_numpy()
        if sel.any():
            signals.append(("chart", name, pos[sel], det["direction"].to_numpy()[sel].astype("int64")))
    if candlesticks is not False and n:
        names = None if candlesticks is True else list(candlesticks)
        cdl = candle_patterns(candles, names)
        for col in cdl.columns:
            v = cdl[col].to_numpy()
            idx = np.flatnonzero(v)
            if idx.size:
                signals.append(("candle", f"cdl_{col}", idx, np.sign(v[idx]).astype("int64")))
    rows: list[dict[str, Any]] = []
    for h in hs:
        fwd = np.full(n, np.nan)
        if n > h:
            fwd[:-h] = close[h:] / close[:-h] - 1.0
        bars = np.arange(n)
        periods = {
            "in_sample": (bars + h < cut) & (bars < n - h),
            "out_of_sample": (bars >= cut) & (bars < n - h),
        }
        for period, mask in periods.items():
            base = fwd[mask]
            p_up, p_dn = (float(np.mean(base > 0)), float(np.mean(base < 0))) if base.size else (np.nan,) * 2
            mu = float(np.mean(base)) if base.size else np.nan
            st = _stats(base)
            rows.append(
                {"period": period, "kind": "base", "pattern": "all_bars", "horizon": h, **st}
                | {
                    "base_hit_rate": st["hit_rate"],
                    "base_mean": st["mean"],
                    "edge": 0.0 if base.size else np.nan,
                    "edge_z": np.nan,
                }
            )
            for kind, name, p, d in signals:
                keep = mask[p]
                r = d[keep] * fwd[p[keep]]
                st = _stats(r)
                if st["count"]:
                    long_share = float(np.mean(d[keep] > 0))
                    b_hit = long_share * p_up + (1 - long_share) * p_dn
                    b_mean = (2 * long_share - 1) * mu
                else:
                    b_hit = b_mean = np.nan
                edge = st["hit_rate"] - b_hit
                se = np.sqrt(b_hit * (1 - b_hit) / st["count"]) if st["count"] else np.nan
                rows.append(
                    {"period": period, "kind": kind, "pattern": name, "horizon": h, **st}
                    | {"base_hit_rate": b_hit, "base_mean": b_mean, "edge": edge}
                    | {"edge_z": edge / se if se > 0 else np.nan}
                )
    out = pd.DataFrame(rows)
    out["count"] = out["count"].astype("int64")
    order = {"base": 0, "chart": 1, "candle": 2}
    out["_k"] = out["kind"].map(order)
    out = out.sort_values(["period", "_k", "pattern", "horizon"], kind="stable").drop(columns="_k")
    return out.reset_index(drop=True)
