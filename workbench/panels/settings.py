"""The Settings page: the effective configuration with every secret masked, the engine's feed status (from
the journal: a dashboard opens no exchange connection, so "connectivity" is what the running engine last saw),
and the risk limits in force."""

from __future__ import annotations

import json
import time
from typing import Any

import ipywidgets as W

from workbench.panels.common import (
    JournalFollower,
    LiveLoop,
    SessionState,
    display_tz,
    fmt_time,
    html_table,
    load_settings_or_default,
    page_frame,
    resolve_session,
)

__all__ = ["feed_status", "masked_config", "page", "risk_limits"]


def masked_config(settings: Any) -> dict[str, Any]:
    """``settings.effective()`` with the value of every credential-named key and every secret-looking string
    masked (:func:`workbench.secrets.redact_data`)."""
    from workbench.secrets import redact_data

    return redact_data(settings.effective())


def risk_limits(settings: Any) -> list[tuple[str, str]]:
    """The risk limits in force as ``(name, value)`` (``off`` for a limit switched off)."""
    d = settings.trading.risk.model_dump(mode="json")
    out = []
    for k, v in d.items():
        if k == "symbols":
            for sym, o in (v or {}).items():
                for kk, vv in o.items():
                    if vv is not None:
                        out.append((f"{sym}: {kk}", str(vv)))
            continue
        out.append((k, "off" if v is None else str(v)))
    return out


def feed_status(state: SessionState, now_ms: int) -> list[dict[str, Any]]:
    """Per symbol: the time and age of the last price, book and candle rows the engine wrote, and whether the
    feed is stale (the last ``stale_feed`` event not followed by a ``feed_resumed`` for it)."""
    stale: dict[str, bool] = {}
    for e in state.risk_events:
        sym = str(e.get("reason", "")).split(":", 1)[0]
        if e.get("event") == "stale_feed":
            stale[sym] = True
        elif e.get("event") == "feed_resumed":
            stale[sym] = False
    out = []
    for sym in state.symbols:
        last_candle = max((max(r) for (s, _), r in state.candles.items() if s == sym and r), default=None)
        p, b = state.prices.get(sym), state.books.get(sym)
        seen = [t for t in (p and p["ts"], b and b["ts"]) if t]
        out.append(
            {
                "symbol": sym,
                "last_price_ms": p["ts"] if p else None,
                "last_book_ms": b["ts"] if b else None,
                "last_candle_ms": last_candle,
                "age_s": (now_ms - max(seen)) / 1000 if seen else None,
                "stale": stale.get(sym, False),
            }
        )
    return out


class SettingsPanel:
    def __init__(self, settings: Any, session: str | None, interval_s: float) -> None:
        self.settings, self.tz = settings, display_tz(settings)
        self.session = resolve_session(settings.data_dir, session)
        cfg = json.dumps(masked_config(settings), indent=2, default=str)
        self.config = W.Textarea(value=cfg, layout=W.Layout(width="100%", height="360px"), disabled=True)
        self.limits = W.HTML(html_table(("limit", "value"), risk_limits(settings)))
        self.feeds = W.HTML("<i>no session: no feed status</i>")
        followers = (
            {} if self.session is None else {self.session: JournalFollower(settings.data_dir, self.session)}
        )
        self.loop = LiveLoop(followers, self.refresh, interval_s=interval_s)
        body = W.VBox([
            W.HTML(f"<h3>Engine feeds ({self.session or 'no session'})</h3>"), self.feeds,
            W.HTML("<h3>Risk limits in force</h3>"), self.limits,
            W.HTML("<h3>Effective configuration (secrets masked)</h3>"), self.config,
        ])  # fmt: skip
        self.widget = page_frame("Settings", body, self.loop)

    def refresh(self, name: str, state: SessionState, changed: set[str]) -> None:
        if not state.exists:
            self.feeds.value = f"<i>no session {name} yet</i>"
            return
        rows = feed_status(state, int(time.time() * 1000))
        eng = state.engine_state or "—"
        self.feeds.value = f"<div>engine: <b>{eng}</b></div>" + html_table(
            ("symbol", "last price", "last book", "last candle", "age", "status"),
            [(r["symbol"], fmt_time(r["last_price_ms"], self.tz), fmt_time(r["last_book_ms"], self.tz),
              fmt_time(r["last_candle_ms"], self.tz), "—" if r["age_s"] is None else f"{r['age_s']:,.1f} s",
              "STALE" if r["stale"] else "ok") for r in rows],
            empty="no data yet",
        )  # fmt: skip


def page(
    settings: Any = None, *, session: str | None = None, interval_s: float = 1.0, start: bool = True
) -> W.Widget:
    """The Settings page."""
    panel = SettingsPanel(load_settings_or_default(settings), session, interval_s)
    if start:
        panel.loop.start()
    else:
        panel.loop.tick(force=True)
    panel.widget.panel = panel  # type: ignore[attr-defined]
    return panel.widget
