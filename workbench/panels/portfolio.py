"""The Portfolio page: the equity curve and its drawdown, positions and PnL by symbol and by tag (strategy /
manual), and the fees paid; all rebuilt from the session's journal (its fills and equity samples)."""

from __future__ import annotations

from typing import Any

import ipywidgets as W

from workbench.panels.common import (
    SessionState,
    display_tz,
    figure_widget,
    fmt_amount,
    fmt_money,
    fmt_price,
    html_table,
    load_settings_or_default,
    resolve_session,
    session_loop,
    session_page,
)
from workbench.viz.live import equity_figure

__all__ = ["page", "pnl_by"]


def pnl_by(state: SessionState) -> dict[str, list[dict[str, Any]]]:
    """``{"symbol": rows, "tag": rows}``: per symbol (totals over tags) and per (symbol, tag), the amount held,
    the average entry price, the realised and unrealised PnL (at the last price) and the fees, in quote; a
    position without a last price has ``unrealized`` None."""
    out: dict[str, list[dict[str, Any]]] = {"symbol": [], "tag": []}
    if not state.fills:
        return out
    pf = state.portfolio()
    tags = sorted({str(f.get("tag", "strategy")) for f in state.fills})
    symbols = list(dict.fromkeys(str(f["symbol"]) for f in state.fills))
    for sym in symbols:
        last = state.last_price(sym)
        for tag in (None, *tags):
            p = pf.position(sym, tag)
            if tag is not None and p.amount == 0 and p.realized_pnl == 0 and p.fees == 0:
                continue
            row = {
                "symbol": sym,
                "tag": tag,
                "amount": p.amount,
                "avg_price": p.avg_price if p.amount else None,
                "realized": p.realized_pnl,
                "unrealized": None if last is None else p.unrealized_pnl(last),
                "fees": p.fees,
            }
            out["symbol" if tag is None else "tag"].append(row)
    return out


class PortfolioPanel:
    def __init__(self, data_dir: Any, session: str | None, tz: str, interval_s: float) -> None:
        self.session = resolve_session(data_dir, session)
        self.tz = tz
        self.chart = figure_widget(equity_figure(SessionState("").equity_series()))
        self.summary = W.HTML()
        self.by_symbol = W.HTML()
        self.by_tag = W.HTML()
        self.loop = session_loop(data_dir, self.session, self.refresh, interval_s)
        self.widget = session_page(
            "Portfolio",
            self.session,
            self.loop,
            [self.summary, self.chart, W.HTML("<h3>By symbol</h3>"), self.by_symbol,
             W.HTML("<h3>By strategy / manual</h3>"), self.by_tag],
        )  # fmt: skip

    def refresh(self, name: str, state: SessionState, changed: set[str]) -> None:
        if not state.exists:
            self.summary.value = f"<i>no session {name} yet</i>"
            return
        q = state.quote
        if changed & {"equity", "meta"} or not changed:
            eq = state.equity_series()
            new = equity_figure(eq)

            def update(fig: Any) -> None:
                for old, tr in zip(fig.data, new.data, strict=True):
                    old.x, old.y = tr.x, tr.y

            self.loop.figure(self.chart, update)
        rows = pnl_by(state)
        fees = sum(r["fees"] for r in rows["symbol"])
        realized = sum(r["realized"] for r in rows["symbol"])
        unreal = sum(r["unrealized"] or 0.0 for r in rows["symbol"])
        last_eq = state.equity[-1][1] if state.equity else None
        self.summary.value = (
            "<i>no data yet</i>"
            if last_eq is None and not state.fills
            else html_table(
                ("equity", "realised PnL", "unrealised PnL", "fees paid"),
                [(fmt_money(last_eq, q), fmt_money(realized, q), fmt_money(unreal, q), fmt_money(fees, q))],
            )
        )

        def table(rs: list[dict[str, Any]], with_tag: bool) -> str:
            heads = ("symbol", *(("tag",) if with_tag else ()), "amount", "avg price", "realised", "unrealised",
                     "fees")  # fmt: skip
            return html_table(
                heads,
                [(r["symbol"], *((r["tag"],) if with_tag else ()), fmt_amount(r["amount"]),
                  fmt_price(r["avg_price"]), fmt_money(r["realized"], q), fmt_money(r["unrealized"], q),
                  fmt_money(r["fees"], q)) for r in rs],
                empty="no trades yet",
            )  # fmt: skip

        self.by_symbol.value = table(rows["symbol"], False)
        self.by_tag.value = table(rows["tag"], True)


def page(
    settings: Any = None, *, session: str | None = None, interval_s: float = 1.0, start: bool = True
) -> W.Widget:
    """The Portfolio page."""
    s = load_settings_or_default(settings)
    panel = PortfolioPanel(s.data_dir, session, display_tz(s), interval_s)
    if start:
        panel.loop.start()
    else:
        panel.loop.tick(force=True)
    panel.widget.panel = panel  # type: ignore[attr-defined]
    return panel.widget
