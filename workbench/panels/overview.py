"""The Overview page: the watched symbols (last price, 24h change and volume, a sparkline), the portfolio summary
(equity, PnL today, exposure), the sessions with their trading state, and the recent alerts (risk events).

Everything is read from the sessions' journals (:mod:`workbench.panels.common`); the page owns no state.
"""

from __future__ import annotations

import html
import math
from typing import Any

import ipywidgets as W
import pandas as pd
import plotly.graph_objects as go

from workbench.panels.common import (
    NO_SESSION,
    JournalFollower,
    LiveLoop,
    SessionState,
    display_tz,
    figure_widget,
    fmt_money,
    fmt_pct,
    fmt_price,
    fmt_time,
    html_table,
    list_sessions,
    load_settings_or_default,
    message,
    page_frame,
    resolve_session,
)
from workbench.viz.live import sparkline_figure

__all__ = ["candles_summary", "market_summary", "page", "portfolio_summary", "recent_alerts", "store_summary"]

DAY_MS = 86_400_000


def candles_summary(symbol: str, c: pd.DataFrame, last: float | None = None) -> dict[str, Any]:
    """Last price (``last``, else the last close), the change over the 24 h up to the last candle (from the
    first open of that window), the volume of those 24 h and the closes for a sparkline; ``None`` where there
    is no data."""
    out: dict[str, Any] = {
        "symbol": symbol,
        "last": last,
        "change_24h": None,
        "volume_24h": None,
        "closes": [],
    }
    if c.empty:
        return out
    if last is None:
        last = out["last"] = float(c["close"].iloc[-1])
    day = c[c.index > c.index[-1] - pd.Timedelta(milliseconds=DAY_MS)]
    ref = float(day["open"].iloc[0])
    if ref > 0:
        out["change_24h"] = last / ref - 1.0
    out["volume_24h"] = float(day["volume"].sum())
    out["closes"] = [float(x) for x in day["close"].tail(288)]
    return out


def market_summary(state: SessionState, symbol: str) -> dict[str, Any]:
    """:func:`candles_summary` of ``symbol`` from the session's journal (its closed candles and last price)."""
    return candles_summary(symbol, state.candle_frame(symbol), state.last_price(symbol))


def store_summary(data_dir: Any, exchange: str, symbol: str, timeframe: str) -> dict[str, Any]:
    """:func:`candles_summary` of a watched symbol from the store (the last 2 days of ``timeframe`` candles);
    a series not stored gives the empty summary with its ``error`` in words."""
    from workbench.data.store import Store, StoreError

    try:
        store = Store(data_dir)
        full = store.candles(exchange, symbol, timeframe)
    except (StoreError, OSError, ValueError) as e:
        return {**candles_summary(symbol, pd.DataFrame()), "error": str(e)}
    return candles_summary(
        symbol, full[full.index > full.index[-1] - pd.Timedelta(days=2)] if len(full) else full
    )


def portfolio_summary(state: SessionState) -> dict[str, Any]:
    """Equity (the last sample), PnL today (since the last sample before the UTC day of the last one began, or
    the day's first), and gross exposure (|positions| × last prices) and its fraction of equity."""
    out: dict[str, Any] = {"equity": None, "pnl_today": None, "exposure": None, "exposure_fraction": None}
    if state.equity:
        ts, eq = state.equity[-1]
        out["equity"] = eq
        day0 = ts - ts % DAY_MS
        before = [e for t, e in state.equity if t < day0]
        start = before[-1] if before else next(e for t, e in state.equity if t >= day0)
        out["pnl_today"] = eq - start
    if state.fills:
        pf = state.portfolio()
        exposure = 0.0
        for sym, pos in pf.positions().items():
            px = state.last_price(sym)
            if px is None:
                exposure = math.nan
                break
            exposure += abs(pos.amount) * px
        out["exposure"] = exposure
        if out["equity"] and math.isfinite(exposure):
            out["exposure_fraction"] = exposure / out["equity"]
    elif state.equity:
        out["exposure"], out["exposure_fraction"] = 0.0, 0.0
    return out


def recent_alerts(state: SessionState, n: int = 10) -> list[dict[str, Any]]:
    """The last ``n`` risk events (refusals, breaches, halts, stale feeds), newest first."""
    return list(reversed(state.risk_events[-n:]))


class OverviewPanel:
    def __init__(
        self,
        data_dir: Any,
        session: str | None,
        tz: str,
        interval_s: float,
        watch: list[str] | None = None,
        exchange: str = "binance",
        timeframe: str = "1h",
    ) -> None:
        self.data_dir, self.tz = data_dir, tz
        self.watch, self.exchange, self.timeframe = list(watch or []), exchange, timeframe
        self._store_read = -math.inf
        self.session = resolve_session(data_dir, session)
        self.sessions = W.HTML()
        self.symbols = W.VBox()
        self.summary = W.HTML()
        self.alerts = W.HTML()
        self._sparks: dict[str, go.FigureWidget] = {}
        self._rows: dict[str, W.HTML] = {}
        followers = {} if self.session is None else {self.session: JournalFollower(data_dir, self.session)}
        self.loop = LiveLoop(followers, self.refresh, interval_s=interval_s)
        body = W.VBox(
            [
                W.HTML("<h3>Sessions</h3>"), self.sessions,
                W.HTML("<h3>Watched symbols</h3>"), self.symbols,
                W.HTML("<h3>Portfolio</h3>"), self.summary,
                W.HTML("<h3>Recent alerts</h3>"), self.alerts,
            ]
        )  # fmt: skip
        self.widget = page_frame("Overview", body, self.loop)
        self._sessions_table()
        if self.session is None:
            self.symbols.children = [message(NO_SESSION, "empty")]
            if self.watch:
                self._symbols(SessionState(""))

    def _sessions_table(self) -> None:
        rows = [
            (s["session"], "RUNNING" if s["running"] else "stopped", s.get("mode") or "—",
             s.get("risk_state") or "—", ", ".join(s.get("symbols") or []), fmt_money(s.get("equity")))
            for s in list_sessions(self.data_dir)
        ]  # fmt: skip
        self.sessions.value = html_table(
            ("session", "engine", "mode", "trading state", "symbols", "equity"), rows,
            empty="no session yet: start one with `workbench up` or `workbench trade run`",
        )  # fmt: skip

    def refresh(self, name: str, state: SessionState, changed: set[str]) -> None:
        if changed & {"state", "risk", "equity", "meta"} or not changed:
            self._sessions_table()
        if not state.exists:
            self.symbols.children = [message(f"no session {name!r} yet", "empty")]
            return
        if changed & {"price", "candle", "meta"} or not changed:
            self._symbols(state)
        q = state.quote
        p = portfolio_summary(state)
        self.summary.value = (
            "no data yet"
            if p["equity"] is None
            else html_table(
                ("equity", "PnL today", "exposure", "exposure / equity"),
                [(fmt_money(p["equity"], q), fmt_money(p["pnl_today"], q), fmt_money(p["exposure"], q),
                  fmt_pct(p["exposure_fraction"]))],
            )
        )  # fmt: skip
        self.alerts.value = html_table(
            ("time", "event", "reason"),
            [
                (fmt_time(e["ts"], self.tz), e.get("event", ""), e.get("reason", ""))
                for e in recent_alerts(state)
            ],
            empty="no alerts",
        )

    def _symbols(self, state: SessionState) -> None:
        import time

        syms = state.symbols
        extra = [w for w in self.watch if w not in syms]
        if not syms and not extra:
            self.symbols.children = [message("no data yet: waiting for the engine's first prices", "empty")]
            return
        if extra and time.monotonic() - self._store_read > 60:  # the store changes by the bar, not the second
            self._store_read = time.monotonic()
            self._stored = {w: store_summary(self.data_dir, self.exchange, w, self.timeframe) for w in extra}
        rows = []
        for s in [*syms, *extra]:
            m = market_summary(state, s) if s in syms else self._stored[s]
            if s not in self._rows:
                self._rows[s] = W.HTML()
                fig = figure_widget(sparkline_figure(m["closes"]))
                self._sparks[s] = fig
            self._rows[s].value = (
                f"<b>{s}</b> &nbsp; {fmt_price(m['last'])} &nbsp; 24h {fmt_pct(m['change_24h'])} "
                f"&nbsp; vol {fmt_price(m['volume_24h'])}"
                + (f" &nbsp; <i>{html.escape(m['error'])}</i>" if m.get("error") else "")
            )
            closes = m["closes"]
            self.loop.figure(self._sparks[s], lambda f, c=closes: _set_spark(f, c))
            rows.append(W.HBox([self._rows[s], self._sparks[s]]))
        self.symbols.children = rows


def _set_spark(fig: Any, closes: list[float]) -> None:
    fig.data[0].y = closes
    fig.data[0].line.color = "#26a69a" if not closes or closes[-1] >= closes[0] else "#ef5350"


def page(
    settings: Any = None,
    *,
    session: str | None = None,
    watch: list[str] | None = None,
    exchange: str = "binance",
    timeframe: str = "1h",
    interval_s: float = 1.0,
    start: bool = True,
) -> W.Widget:
    """The Overview page: the session's symbols from its journal, and ``watch`` (more symbols) from the store's
    ``exchange`` / ``timeframe`` candles. ``start=False``: no live task (tests tick ``page.panel.loop``)."""
    s = load_settings_or_default(settings)
    panel = OverviewPanel(s.data_dir, session, display_tz(s), interval_s, watch, exchange, timeframe)
    if start:
        panel.loop.start()
    else:
        panel.loop.tick(force=True)
    panel.widget.panel = panel  # type: ignore[attr-defined]
    return panel.widget
