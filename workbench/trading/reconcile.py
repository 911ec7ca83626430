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

The summary also compares the final equity (relative difference).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["compare"]


def _key(f: Mapping[str, Any]) -> tuple[int, str, str]:
    return int(f["timestamp"]), str(f["symbol"]), str(f["side"])


def compare(
    backtest: Mapping[str, Any],
    session: Mapping[str, Any],
    *,
    lot_steps: Mapping[str, float] | None = None,
    equity_rtol: float = 1e-4,
    start_ms: int | None = None,
) -> dict[str, Any]:
    """Pair the fills of ``backtest`` (a ``backtest --json`` dict) and ``session`` (a journal export)."""
    steps = dict(lot_steps or session.get("markets") or {})
    s_fills = sorted(session.get("fills") or [], key=_key)
    first = start_ms if start_ms is not None else (s_fills[0]["timestamp"] if s_fills else None)
    b_fills = sorted(
        (f for f in backtest.get("fills") or [] if first is None or f["timestamp"] >= first), key=_key
    )
    if s_fills:
        last = s_fills[-1]["timestamp"]
        b_fills = [f for f in b_fills if f["timestamp"] <= last]
    rows: list[dict[str, Any]] = []
    i = j = 0
    while i < len(b_fills) or j < len(s_fills):
        b = b_fills[i] if i < len(b_fills) else None
        s = s_fills[j] if j < len(s_fills) else None
        if b is not None and s is not None and _key(b) == _key(s):
            rows.append(_pair(b, s, steps))
            i += 1
            j += 1
        elif s is None or (b is not None and _key(b) < _key(s)):
            rows.append(_row(b, None, "missing in session"))
            i += 1
        else:
            rows.append(_row(None, s, "extra in session"))
            j += 1
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    eq_b = _final_equity(backtest.get("equity"))
    eq_s = _final_equity(session.get("equity"))
    rel = abs(eq_s / eq_b - 1.0) if eq_b and eq_s else None
    ok = all(r["verdict"] in ("same", "lot rounding") for r in rows) and (rel is None or rel <= equity_rtol)
    summary = (
        f"{len(rows)} fills: "
        + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        + (
            f"; final equity backtest {eq_b:,.2f}, session {eq_s:,.2f} (rel. diff {rel:.2e})"
            if rel is not None
            else ""
        )
        + ("; OK" if ok else "; DIFFERENT")
    )
    return {"ok": ok, "rows": rows, "counts": counts, "equity_rel_diff": rel, "summary": summary}


def _final_equity(eq: Any) -> float | None:
    if not eq:
        return None
    last = eq[-1]
    if isinstance(last, Mapping):
        return float(last["equity"])
    return float(last[1])


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
