"""Backtest against session, trade by trade (``workbench reconcile --backtest BT.json --session NAME``).

Both sides are lists of fills of one shape (``backtest --json``'s ``fills`` and ``journal export``'s ``fills``).
Fills are paired in time order by (timestamp, symbol, side); each pair gets a verdict that names the fill-model
rule behind any difference:

* ``same`` — equal time and side, amount within one lot step, price equal (1e-9 relative);
* ``lot rounding`` — the session's amount is the backtest's rounded down to the market's lot step (the paper
  broker and the venue trade whole lots; the backtest trades any fraction), or capped by the quote balance
  that earlier rounding left;
* ``price`` — the same fill at another price (a different reference price or slippage: a live fill);
* ``missing in session`` / ``extra in session`` — a fill on one side only (a stop the session saw at another
  price, an order the risk manager refused, a bar the session was not running for).

The summary also compares the equity bar by bar (the largest relative difference over the common bars).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["compare"]


def _key(f: Mapping[str, Any], tf_ms: int = 1) -> tuple[int, str, str]:
    t = int(f["timestamp"])
    return t - t % tf_ms, str(f["symbol"]), str(f["side"])


def compare(
    backtest: Mapping[str, Any],
    session: Mapping[str, Any],
    *,
    lot_steps: Mapping[str, float] | None = None,
    equity_rtol: float = 1e-4,
    start_ms: int | None = None,
    end_ms: int | None = None,
    timeframe_ms: int | None = None,
) -> dict[str, Any]:
    """Pair the fills of ``backtest`` (a ``backtest --json`` dict) and ``session`` (a journal export) within
    ``[start_ms, end_ms]`` (default: the period both cover: the session's bars, from its equity samples).
    With ``timeframe_ms``, fills pair by the bar they fall in (a live fill comes moments after the bar's open, or
    inside the bar for a stop; the backtest stamps both with the bar's open time)."""
    tf = int(timeframe_ms or 1)
    steps = dict(lot_steps or session.get("markets") or {})
    s_eq = _equity_by_ms(session.get("equity"))
    b_eq = _equity_by_ms(backtest.get("equity"))
    if start_ms is None:
        start_ms = min(s_eq) if s_eq else None
    if end_ms is None:
        end_ms = max(s_eq) if s_eq else None

    def inside(f: Mapping[str, Any]) -> bool:
        t = int(f["timestamp"])
        t -= t % tf
        return (start_ms is None or t >= start_ms) and (end_ms is None or t <= end_ms)

    def key(f: Mapping[str, Any]) -> tuple[int, str, str]:
        return _key(f, tf)

    s_fills = sorted((f for f in session.get("fills") or [] if inside(f)), key=key)
    b_fills = sorted((f for f in backtest.get("fills") or [] if inside(f)), key=key)
    rows: list[dict[str, Any]] = []
    i = j = 0
    while i < len(b_fills) or j < len(s_fills):
        b = b_fills[i] if i < len(b_fills) else None
        s = s_fills[j] if j < len(s_fills) else None
        if b is not None and s is not None and key(b) == key(s):
            rows.append(_pair(b, s, steps))
            i += 1
            j += 1
        elif s is None or (b is not None and key(b) < key(s)):
            rows.append(_row(b, None, "missing in session"))
            i += 1
        else:
            rows.append(_row(None, s, "extra in session"))
            j += 1
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    common = sorted(set(s_eq) & set(b_eq))
    rel = max((abs(s_eq[t] / b_eq[t] - 1.0) for t in common), default=None)
    eq_b = b_eq[common[-1]] if common else None
    eq_s = s_eq[common[-1]] if common else None
    ok = all(r["verdict"] in ("same", "lot rounding") for r in rows) and (rel is None or rel <= equity_rtol)
    summary = (
        f"{len(rows)} fills: "
        + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        + (
            f"; equity on {len(common)} common bars: last backtest {eq_b:,.2f}, session {eq_s:,.2f}, "
            f"largest relative difference {rel:.2e}"
            if rel is not None
            else "; no common equity bars"
        )
        + ("; OK" if ok else "; DIFFERENT")
    )
    return {"ok": ok, "rows": rows, "counts": counts, "equity_rel_diff": rel, "summary": summary}


def _equity_by_ms(eq: Any) -> dict[int, float]:
    """Equity samples by time: a journal export's ``{"timestamp", "equity"}`` rows of closed bars, or a
    backtest's ``[iso time, equity]`` pairs."""
    out: dict[int, float] = {}
    for row in eq or []:
        if isinstance(row, Mapping):
            if not row.get("bar"):
                continue
            out[int(row["timestamp"])] = float(row["equity"])
        else:
            if row[1] is None or isinstance(row[1], str):  # no value at that bar (NaN / ±inf, stored as JSON)
                continue
            t = pd.Timestamp(row[0])
            t = t.tz_localize("UTC") if t.tzinfo is None else t
            out[int(t.value // 1_000_000)] = float(row[1])
    return out


def _row(b: Mapping[str, Any] | None, s: Mapping[str, Any] | None, verdict: str) -> dict[str, Any]:
    x = b or s
    assert x is not None
    return {
        "time": x["timestamp"],
        "symbol": x["symbol"],
        "side": x["side"],
        "bt_amount": None if b is None else float(b["amount"]),
        "amount": None if s is None else float(s["amount"]),
        "bt_price": None if b is None else float(b["price"]),
        "price": None if s is None else float(s["price"]),
        "verdict": verdict,
    }


def _pair(b: Mapping[str, Any], s: Mapping[str, Any], steps: Mapping[str, Any]) -> dict[str, Any]:
    step = steps.get(s["symbol"])
    if isinstance(step, Mapping):
        step = step.get("amount_step")
    step = float(step or 0.0)
    ba, sa = float(b["amount"]), float(s["amount"])
    bp, sp = float(b["price"]), float(s["price"])
    same_price = abs(sp / bp - 1.0) <= 1e-9
    if not same_price:
        verdict = "price"
    elif abs(sa - ba) <= 1e-12 * max(ba, 1.0):
        verdict = "same"
    elif sa <= ba + 1e-12 and (ba - sa) <= max(step, 1e-12) * 1.000001 + 1e-12:
        verdict = "lot rounding"
    elif sa <= ba and step and (ba - sa) / ba < 1e-3:
        verdict = "lot rounding"  # the rest capped by a balance earlier rounding changed
    else:
        verdict = "amount"
    r = _row(b, s, verdict)
    return r
