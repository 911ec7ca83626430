"""Gaps in Candles: find them, fill short ones explicitly, split or refuse at long ones, drop filler bars.

A gap is a run of missing bars between two present bars: bar-open times ``prev`` and ``next`` with
``next - prev > timeframe``. It is reported as the half-open time range ``[start, end)`` of the missing bar
opens, ``start = prev + timeframe`` and ``end = next`` (the first present bar after it), with
``missing_bars = (end - start) / timeframe``.

Rules of :func:`fill_gaps` (nothing is ever forward-filled silently across an outage):

- a gap is SHORT if ``missing_bars <= max_gap_bars``, else LONG; with ``max_gap_bars=None`` every gap is
  short (so ``rule='ffill'`` requires ``max_gap_bars``);
- ``rule='none'``: short gaps stay gaps; ``rule='ffill'``: each missing bar of a short gap is inserted as a
  flat bar at the previous close (open = high = low = close = previous close) with volume 0;
- long gaps: ``on_long_gap='raise'`` (ValueError naming the gap's time range), ``'keep'`` (leave it) or
  ``'split'`` (return a list of segments, each free of long gaps, split at them).

The result carries a boolean ``filled`` column: True for inserted bars (kept True for bars a previous call
inserted). Times are the candles' UTC index; attrs are kept.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal, overload

import numpy as np
import pandas as pd

from workbench.features.indicators import _hint
from workbench.types import Timeframe

__all__ = ["drop_filler_bars", "fill_gaps", "find_gaps"]

FillRule = Literal["none", "ffill"]
LongGapRule = Literal["raise", "keep", "split"]
_RULES = ("none", "ffill")
_LONG = ("raise", "keep", "split")


def _timeframe(candles: pd.DataFrame, timeframe: str | Timeframe | None) -> Timeframe:
    tf = timeframe if timeframe is not None else candles.attrs.get("timeframe")
    if tf is None:
        raise ValueError("no timeframe given and candles.attrs has no 'timeframe'; pass timeframe='1h' etc.")
    return Timeframe.parse(tf)


def _times_ns(candles: pd.DataFrame) -> np.ndarray:
    if not isinstance(candles.index, pd.DatetimeIndex):
        raise ValueError(
            f"candles must have a DatetimeIndex of bar-open times, got {type(candles.index).__name__}"
        )
    return candles.index.as_unit("ns").asi8


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _gap_positions(candles: pd.DataFrame, tf: Timeframe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position of the bar before each gap, its start ns, missing bars); errors on disorder or off-grid."""
    ts = _times_ns(candles)
    step = tf.ms * 1_000_000
    if len(ts) < 2:
        empty = np.array([], dtype=np.int64)
        return empty, empty, empty
    d = np.diff(ts)
    bad = np.flatnonzero(d <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(
            f"candles: row {i + 1} ({_iso(ts[i])}) is not after the previous bar (sorted, unique index required)"
        )
    bad = np.flatnonzero(d % step != 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(
            f"candles: row {i + 1} ({_iso(ts[i])}) is {d[bad[0]] / 1e9:g} s after the previous bar, "
            f"not a multiple of the timeframe {tf}"
        )
    pos = np.flatnonzero(d > step)
    return pos, ts[pos] + step, d[pos] // step - 1


def find_gaps(candles: pd.DataFrame, timeframe: str | Timeframe | None = None) -> pd.DataFrame:
    """The gaps of ``candles`` (timeframe from the argument or ``candles.attrs['timeframe']``).

    Returns a DataFrame with one row per gap: ``start`` (open time of the first missing bar), ``end`` (open
    time of the first present bar after the gap; the range is half-open ``[start, end)``), ``missing_bars``
    (int64). Empty when there is no gap. Only gaps BETWEEN bars are found, not before the first or after the last.
    """
    tf = _timeframe(candles, timeframe)
    pos, start, missing = _gap_positions(candles, tf)
    ts = _times_ns(candles)
    return pd.DataFrame(
        {
            "start": pd.to_datetime(start, unit="ns", utc=True),
            "end": pd.to_datetime(ts[pos + 1], unit="ns", utc=True),
            "missing_bars": missing.astype("int64"),
        }
    )


def _ffill_short(candles: pd.DataFrame, tf: Timeframe, gaps: list[tuple[int, int]]) -> pd.DataFrame:
    """``candles`` with the gaps ``(start ns, missing)`` filled by flat zero-volume bars; adds ``filled``."""
    out = candles.copy()
    out["filled"] = candles["filled"].astype(bool) if "filled" in candles.columns else False
    if not gaps:
        return out
    step = tf.ms * 1_000_000
    new_ns = np.concatenate([s + step * np.arange(k, dtype=np.int64) for s, k in gaps])
    unit = candles.index.unit
    new_index = pd.DatetimeIndex(pd.to_datetime(new_ns, unit="ns", utc=True)).as_unit(unit)
    if candles.index.tz is None:
        new_index = new_index.tz_localize(None)
    full = out.index.append(new_index).sort_values()
    full.name = candles.index.name
    out = out.reindex(full)
    inserted = ~full.isin(candles.index)
    prev_close = out["close"].ffill()
    for col in ("open", "high", "low", "close"):
        out.loc[inserted, col] = prev_close[inserted]
    out.loc[inserted, "volume"] = 0.0
    out["filled"] = out["filled"].where(~inserted, True).astype(bool)
    for col in candles.columns:
        if col in ("open", "high", "low", "close", "volume"):
            out[col] = out[col].astype("float64")
    out.attrs = dict(candles.attrs)
    return out


@overload
def fill_gaps(
    candles: pd.DataFrame,
    timeframe: str | Timeframe | None = ...,
    *,
    rule: FillRule = ...,
    max_gap_bars: int | None = ...,
    on_long_gap: Literal["raise", "keep"] = ...,
) -> pd.DataFrame: ...


@overload
def fill_gaps(
    candles: pd.DataFrame,
    timeframe: str | Timeframe | None = ...,
    *,
    rule: FillRule = ...,
    max_gap_bars: int | None = ...,
    on_long_gap: Literal["split"],
) -> list[pd.DataFrame]: ...


def fill_gaps(
    candles: pd.DataFrame,
    timeframe: str | Timeframe | None = None,
    *,
    rule: FillRule = "none",
    max_gap_bars: int | None = None,
    on_long_gap: LongGapRule = "raise",
) -> pd.DataFrame | list[pd.DataFrame]:
    """Apply the gap rules of the module docstring; returns candles with a boolean ``filled`` column, or
    with ``on_long_gap='split'`` a list of such segments (in time order).

    Examples: ``fill_gaps(c, '1m', rule='ffill', max_gap_bars=3)`` fills gaps of up to 3 missing bars and
    raises on a longer one; ``fill_gaps(c, '1h', max_gap_bars=0, on_long_gap='split')`` splits at every gap.
    """
    if rule not in _RULES:
        raise ValueError(
            f"unknown gap rule {rule!r}{_hint(str(rule), _RULES)}; choose one of {', '.join(_RULES)}"
        )
    if on_long_gap not in _LONG:
        raise ValueError(
            f"unknown on_long_gap {on_long_gap!r}{_hint(str(on_long_gap), _LONG)}; choose one of {', '.join(_LONG)}"
        )
    if max_gap_bars is not None and (
        isinstance(max_gap_bars, bool) or not isinstance(max_gap_bars, int | np.integer) or max_gap_bars < 0
    ):
        raise ValueError(f"max_gap_bars must be an integer >= 0 or None, got {max_gap_bars!r}")
    if rule == "ffill" and max_gap_bars is None:
        raise ValueError(
            "rule='ffill' needs max_gap_bars (the longest gap, in bars, that may be filled): "
            "forward-filling across an outage of any length would invent prices"
        )
    tf = _timeframe(candles, timeframe)
    pos, start, missing = _gap_positions(candles, tf)
    long = missing > max_gap_bars if max_gap_bars is not None else np.zeros(len(missing), dtype=bool)
    if long.any() and on_long_gap == "raise":
        i = int(np.flatnonzero(long)[0])
        end = start[i] + int(missing[i]) * tf.ms * 1_000_000
        raise ValueError(
            f"gap of {int(missing[i])} missing {tf} bar(s) from {_iso(start[i])} to {_iso(end)} (exclusive) "
            f"is longer than max_gap_bars={max_gap_bars}; {int(long.sum())} such gap(s). "
            "Use on_long_gap='split' (segments) or 'keep' (leave it), or raise max_gap_bars"
        )
    short = [(int(s), int(k)) for s, k, lg in zip(start, missing, long, strict=True) if not lg]
    if rule == "none":
        short = []
    if on_long_gap != "split":
        return _ffill_short(candles, tf, short)
    cuts = [0, *(int(p) + 1 for p in pos[long]), len(candles)]
    segments = []
    for a, b in pairwise(cuts):
        seg = candles.iloc[a:b]
        seg.attrs = dict(candles.attrs)
        lo, hi = (
            (seg.index[0].as_unit("ns").value, seg.index[-1].as_unit("ns").value) if len(seg) else (0, -1)
        )
        segments.append(_ffill_short(seg, tf, [(s, k) for s, k in short if lo < s < hi]))
    return segments


def drop_filler_bars(candles: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Remove filler bars: volume 0 and open = high = low = close (what some exchanges emit during an
    outage, and what :func:`fill_gaps` inserts). Returns the remaining candles and the number removed.
    A zero-volume bar whose prices move is kept (it is not a flat filler)."""
    o, h, lo, c, v = (candles[k].to_numpy("float64") for k in ("open", "high", "low", "close", "volume"))
    filler = (v == 0) & (o == h) & (h == lo) & (lo == c)
    out = candles.loc[~filler].copy()
    out.attrs = dict(candles.attrs)
    return out, int(filler.sum())
