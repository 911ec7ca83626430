"""Data-quality listing and audit of the candles in the store.

* :func:`list_series`: one row per stored series (exchange, symbol, timeframe, first, last, rows, gaps).
* :func:`audit`: one row per finding: gaps, duplicates, zero-volume filler bars, OHLC inconsistencies and
  outliers (robust z-score of log returns), each with its time range so it can be looked at.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.data.store import Store
from workbench.types import DataKey, Timeframe

__all__ = ["AUDIT_COLUMNS", "audit", "audit_summary", "list_series"]

AUDIT_COLUMNS = ["exchange", "symbol", "timeframe", "check", "start", "end", "bars", "detail"]


def _ts(ms: int | np.integer) -> pd.Timestamp:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC")


def list_series(store: Store, kind: str = "candles") -> pd.DataFrame:
    """What the store holds: for candles, exchange, symbol, timeframe, first, last, rows, missing bars, gaps."""
    rows = []
    for key in store.series(kind):
        b = store.bounds(key)
        if b is None:
            continue
        first, last, n = b
        row: dict[str, object] = {
            "exchange": key.exchange,
            "symbol": key.symbol,
            "timeframe": key.timeframe,
            "first": _ts(first),
            "last": _ts(last),
            "rows": n,
        }
        if kind == "candles":
            tf = Timeframe.parse(key.timeframe or "")
            ts = store.read_table(key, columns=["ts"]).column("ts").to_numpy()
            d = np.diff(ts)
            row["missing_bars"] = int((last - first) // tf.ms + 1 - len(np.unique(ts)))
            row["gaps"] = int((d > tf.ms).sum())
        rows.append(row)
    cols = ["exchange", "symbol", "timeframe", "first", "last", "rows"]
    if kind == "candles":
        cols += ["missing_bars", "gaps"]
    else:
        cols.remove("timeframe")
        rows = [{k: v for k, v in r.items() if k != "timeframe"} for r in rows]
    return pd.DataFrame(rows, columns=cols)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Start and end (inclusive) positions of runs of True."""
    if not mask.any():
        return []
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1, strict=True))


def audit_candles(
    key: DataKey, ts: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray,
    *, outlier_z: float = 12.0,
) -> list[dict[str, object]]:
    """Findings for one candle series given as arrays (ts in ms, sorted)."""
    tf = Timeframe.parse(key.timeframe or "")
    base = {"exchange": key.exchange, "symbol": key.symbol, "timeframe": key.timeframe}
    out: list[dict[str, object]] = []
    if len(ts) == 0:
        return out
    d = np.diff(ts)
    for i in np.flatnonzero(d > tf.ms):
        missing = int(d[i] // tf.ms - 1)
        out.append(
            {**base, "check": "gap", "start": _ts(ts[i] + tf.ms), "end": _ts(ts[i + 1] - tf.ms),
             "bars": missing, "detail": f"{missing} missing bar(s)"}
        )
    for i in np.flatnonzero(d == 0):
        out.append({**base, "check": "duplicate", "start": _ts(ts[i]), "end": _ts(ts[i]), "bars": 2,
                    "detail": "timestamp appears twice"})
    for i in np.flatnonzero(d < 0):
        out.append({**base, "check": "order", "start": _ts(ts[i + 1]), "end": _ts(ts[i]), "bars": 1,
                    "detail": "timestamps out of order"})
    flat = (v == 0) & (h == lo)
    for a, b in _runs(flat):
        out.append({**base, "check": "zero_volume", "start": _ts(ts[a]), "end": _ts(ts[b]),
                    "bars": int(b - a + 1), "detail": "zero-volume flat bar(s): filler, treat as missing"})
    for a, b in _runs((v == 0) & ~flat):
        out.append({**base, "check": "zero_volume", "start": _ts(ts[a]), "end": _ts(ts[b]),
                    "bars": int(b - a + 1), "detail": "zero volume with a price range"})
    bad = (h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (lo > h) | ~np.isfinite(o + h + lo + c + v)
    bad |= (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0) | (v < 0)
    for i in np.flatnonzero(bad):
        out.append({**base, "check": "ohlc", "start": _ts(ts[i]), "end": _ts(ts[i]), "bars": 1,
                    "detail": f"open={o[i]} high={h[i]} low={lo[i]} close={c[i]} volume={v[i]}"})
    if len(c) > 20 and np.all(c > 0):
        # Bad ticks, not big moves: crypto returns are fat-tailed, so a large move alone is no finding. Flag a
        # spike that reverts on the next bar (both moves beyond ``outlier_z`` robust z, opposite signs), or a
        # single move beyond 4x that threshold.
        r = np.diff(np.log(c))
        med = np.median(r)
        mad = np.median(np.abs(r - med)) * 1.4826
        if mad > 0:
            z = (r - med) / mad
            spike = np.zeros(len(r), dtype=bool)
            spike[:-1] = (np.abs(z[:-1]) > outlier_z) & (np.abs(z[1:]) > outlier_z) & (np.sign(z[:-1]) != np.sign(z[1:]))
            spike[:-1] &= np.abs(r[1:]) >= 0.5 * np.abs(r[:-1])
            jump = np.abs(z) > 4 * outlier_z
            jump[1:] &= ~spike[:-1]  # the reverting half of a spike is part of that finding
            for i in np.flatnonzero(spike | jump):
                what = "spike that reverts next bar" if spike[i] else "extreme move"
                out.append({**base, "check": "outlier", "start": _ts(ts[i + 1]), "end": _ts(ts[i + 1]), "bars": 1,
                            "detail": f"{what}: close-to-close {np.expm1(r[i]):+.2%} (robust z {z[i]:+.1f})"})
    return out


def audit(
    store: Store,
    exchange: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    *,
    outlier_z: float = 12.0,
) -> pd.DataFrame:
    """Audit stored candles (all, or those matching the filters). One row per finding, ``AUDIT_COLUMNS``."""
    rows: list[dict[str, object]] = []
    for key in store.series("candles"):
        if (exchange and key.exchange != exchange) or (symbol and key.symbol != symbol):
            continue
        if timeframe and key.timeframe != Timeframe.parse(timeframe).value:
            continue
        t = store.read_table(key)
        cols = [t.column(n).to_numpy() for n in ("ts", "open", "high", "low", "close", "volume")]
        rows += audit_candles(key, *cols, outlier_z=outlier_z)
    return pd.DataFrame(rows, columns=AUDIT_COLUMNS)


def audit_summary(store: Store, findings: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per series: rows and the number of findings of each check (zero where clean)."""
    findings = audit(store) if findings is None else findings
    listing = list_series(store)
    checks = ["gap", "duplicate", "order", "zero_volume", "ohlc", "outlier"]
    if listing.empty:
        return pd.DataFrame(columns=["exchange", "symbol", "timeframe", "rows", *checks])
    counts = (
        findings.groupby(["exchange", "symbol", "timeframe", "check"]).size().unstack("check")
        if not findings.empty
        else pd.DataFrame()
    )
    out = listing[["exchange", "symbol", "timeframe", "rows"]].copy()
    for ch in checks:
        out[ch] = [
            int(counts.loc[(r.exchange, r.symbol, r.timeframe), ch])
            if not counts.empty and ch in counts.columns and (r.exchange, r.symbol, r.timeframe) in counts.index
            and pd.notna(counts.loc[(r.exchange, r.symbol, r.timeframe), ch])
            else 0
            for r in out.itertuples()
        ]
    return out
