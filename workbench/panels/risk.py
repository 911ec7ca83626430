"""The Risk page: how close the session is to each limit in force (usage bars), its trading state (ACTIVE /
REDUCING / HALTED), and the risk events and refusals from its journal.

The limits are ``trading.risk`` of the configuration (:class:`workbench.config.RiskConfig`, the ones the engine
applies); the values are derived from the journal alone: drawdown from the peak equity sample, the loss since
the UTC day's starting equity (as :mod:`workbench.trading.risk` defines them), the open orders, the orders of
the last minute, the gross exposure and the largest position over equity, and the age of the last price.
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as W

from workbench.panels.common import (
    STATE_COLOURS,
    SessionState,
    display_tz,
    figure_widget,
    fmt_pct,
    fmt_time,
    html_table,
    load_settings_or_default,
    resolve_session,
    session_loop,
    session_page,
)
from workbench.viz.live import limit_usage_figure

__all__ = ["limit_usage", "page", "refusals"]

DAY_MS = 86_400_000


def _row(label: str, value: float | None, limit: float | None, text: str) -> dict[str, Any]:
    frac = None if value is None or limit is None or not math.isfinite(value) or limit <= 0 else value / limit
    return {"label": label, "value": value, "limit": limit, "fraction": frac, "text": text}


def limit_usage(state: SessionState, limits: Any, now_ms: int) -> list[dict[str, Any]]:
    """One row per limit in force: ``label``, ``value``, ``limit``, ``fraction`` (value / limit; None when the
    journal has no data for it yet) and ``text`` (value and limit in words)."""
    rows: list[dict[str, Any]] = []
    eq = [e for _, e in state.equity if math.isfinite(e)]
    if eq:
        peak, last = max(eq), eq[-1]
        dd = (peak - last) / peak if peak > 0 else None
        rows.append(
            _row("drawdown", dd, limits.max_drawdown, f"{fmt_pct(dd)} of {fmt_pct(limits.max_drawdown)}")
        )
        ts = state.equity[-1][0]
        day0 = ts - ts % DAY_MS
        before = [e for t, e in state.equity if t < day0]
        start = before[-1] if before else next(e for t, e in state.equity if t >= day0)
        loss = max(0.0, (start - last) / start) if start > 0 else None
        rows.append(_row("daily loss", loss, limits.daily_loss_limit,
                         f"{fmt_pct(loss)} of {fmt_pct(limits.daily_loss_limit)}"))  # fmt: skip
    else:
        rows.append(_row("drawdown", None, limits.max_drawdown, "no equity yet"))
        rows.append(_row("daily loss", None, limits.daily_loss_limit, "no equity yet"))
    if limits.max_open_orders is not None:
        n = len(state.open_orders())
        rows.append(
            _row("open orders", float(n), float(limits.max_open_orders), f"{n} of {limits.max_open_orders}")
        )
    if limits.max_orders_per_minute is not None:
        n = sum(1 for o in state.orders.values() if now_ms - 60_000 < int(o.get("created_ms") or 0) <= now_ms)
        rows.append(_row("orders per minute", float(n), float(limits.max_orders_per_minute),
                         f"{n} of {limits.max_orders_per_minute}"))  # fmt: skip
    last_eq = eq[-1] if eq else None
    if state.fills and last_eq:
        pf = state.portfolio()
        gross, largest, missing = 0.0, 0.0, []
        for sym, p in pf.positions().items():
            px = state.last_price(sym)
            if px is None:
                missing.append(sym)
                continue
            v = abs(p.amount) * px
            gross += v
            largest = max(largest, v)
        g, lp = (None, None) if missing else (gross / last_eq, largest / last_eq)
        rows.append(_row("gross exposure", g, limits.max_gross_exposure,
                         f"{fmt_pct(g)} of {fmt_pct(limits.max_gross_exposure)}"))  # fmt: skip
        rows.append(_row("largest position", lp, limits.max_position_fraction,
                         f"{fmt_pct(lp)} of {fmt_pct(limits.max_position_fraction)}"))  # fmt: skip
    else:
        rows.append(_row("gross exposure", 0.0 if last_eq else None, limits.max_gross_exposure,
                         f"0.00% of {fmt_pct(limits.max_gross_exposure)}" if last_eq else "no equity yet"))  # fmt: skip
        rows.append(_row("largest position", 0.0 if last_eq else None, limits.max_position_fraction,
                         f"0.00% of {fmt_pct(limits.max_position_fraction)}" if last_eq else "no equity yet"))  # fmt: skip
    if limits.stale_feed_s is not None:
        ages = [(now_ms - int(p["ts"])) / 1000 for p in state.prices.values()]
        age = max(ages) if ages else None
        rows.append(_row("feed age", age, float(limits.stale_feed_s),
                         "no price yet" if age is None else f"{age:,.1f} s of {limits.stale_feed_s:g} s"))  # fmt: skip
    return rows


def refusals(state: SessionState) -> list[dict[str, Any]]:
    """The risk events that refused an order, newest first."""
    return [e for e in reversed(state.risk_events) if e.get("event") == "refused"]


class RiskPanel:
    def __init__(self, data_dir: Any, session: str | None, limits: Any, tz: str, interval_s: float) -> None:
        self.session, self.limits, self.tz = resolve_session(data_dir, session), limits, tz
        self.state_box = W.HTML()
        self.chart = figure_widget(limit_usage_figure(limit_usage(SessionState(""), limits, 0)))
        self.events = W.HTML()
        self.refused = W.HTML()
        self.loop = session_loop(data_dir, self.session, self.refresh, interval_s)
        self.widget = session_page(
            "Risk",
            self.session,
            self.loop,
            [self.state_box, self.chart, W.HTML("<h3>Refusals</h3>"), self.refused,
             W.HTML("<h3>Risk events</h3>"), self.events],
        )  # fmt: skip

    def refresh(self, name: str, state: SessionState, changed: set[str]) -> None:
        import time

        if not state.exists:
            self.state_box.value = f"<i>no session {name} yet</i>"
            return
        rs = state.risk_state or "unknown"
        colour = STATE_COLOURS.get(rs, "#555")
        self.state_box.value = (
            f"<div class='wb-risk-state'>trading state: <b style='color:{colour}'>{rs}</b> &nbsp; "
            f"engine: {state.engine_state or '—'}</div>"
        )
        rows = limit_usage(state, self.limits, int(time.time() * 1000))
        new = limit_usage_figure(rows)

        def update(fig: Any) -> None:
            tr = new.data[0]
            fig.data[0].update(x=tr.x, y=tr.y, text=tr.text, marker=tr.marker)
            fig.layout.height = new.layout.height

        self.loop.figure(self.chart, update)
        ev = [
            (fmt_time(e["ts"], self.tz), e.get("event", ""), e.get("reason", ""))
            for e in reversed(state.risk_events[-50:])
        ]
        self.events.value = html_table(("time", "event", "reason"), ev, empty="no risk events")
        self.refused.value = html_table(
            ("time", "order", "reason"),
            [
                (fmt_time(e["ts"], self.tz), e.get("client_order_id", ""), e.get("reason", ""))
                for e in refusals(state)[:50]
            ],
            empty="no refusals",
        )


def page(
    settings: Any = None, *, session: str | None = None, interval_s: float = 1.0, start: bool = True
) -> W.Widget:
    """The Risk page (limits from ``settings.trading.risk``)."""
    s = load_settings_or_default(settings)
    panel = RiskPanel(s.data_dir, session, s.trading.risk, display_tz(s), interval_s)
    if start:
        panel.loop.start()
    else:
        panel.loop.tick(force=True)
    panel.widget.panel = panel  # type: ignore[attr-defined]
    return panel.widget
