"""The Trading page: candles with selectable indicators (``workbench.features``) and volume, updating as candles
close; the order book ladder and depth chart (the journal's ``book`` rows); the order form; open orders with
cancel; trade history; positions with close; pause / resume / flatten / kill switch, each with a confirmation.

Every order and command goes through the journal's command channel (:class:`~workbench.panels.common.CommandChannel`)
to the engine, whose risk manager checks it like any other; a refusal shows the reason from the engine's ack.
The form validates before sending (:func:`validate_order`) and asks for a confirmation above a notional
threshold. A buy may carry a stop-loss and a take-profit (absolute prices): they go with the ``order`` command,
the engine checks them again (a refusal comes back in its ack, nothing sent) and, once the buy fills, sells the
manual position at market when the price reaches either (``SessionState.brackets`` shows the levels). A sell
with them is refused in words (spot is long only: there is nothing they would protect).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets as W
import pandas as pd

from workbench.panels.common import (
    NO_SESSION,
    STATE_COLOURS,
    CommandChannel,
    SessionState,
    display_tz,
    figure_widget,
    fmt_amount,
    fmt_money,
    fmt_price,
    fmt_time,
    html_table,
    load_settings_or_default,
    message,
    page_frame,
    resolve_session,
    run_soon,
    session_loop,
)
from workbench.viz.live import candles_figure, depth_figure

__all__ = [
    "INDICATORS",
    "OrderRequest",
    "book_ladder",
    "compute_indicators",
    "history_candles",
    "page",
    "validate_order",
]

INDICATORS: dict[str, tuple[str, dict[str, Any], str]] = {
    "SMA 20": ("SMA", {"timeperiod": 20}, "real"),
    "SMA 50": ("SMA", {"timeperiod": 50}, "real"),
    "EMA 20": ("EMA", {"timeperiod": 20}, "real"),
    "Bollinger upper 20": ("BBANDS", {"timeperiod": 20}, "upperband"),
    "Bollinger lower 20": ("BBANDS", {"timeperiod": 20}, "lowerband"),
}
"""Indicator choices: label -> (TA-Lib function, parameters, output column), computed by workbench.features."""


def compute_indicators(candles: pd.DataFrame, names: list[str]) -> dict[str, pd.Series]:
    """The chosen indicators over ``candles`` (an unknown name is a ValueError naming the choices)."""
    from workbench.features.indicators import indicator

    out: dict[str, pd.Series] = {}
    for n in names:
        if n not in INDICATORS:
            raise ValueError(f"unknown indicator {n!r} (choices: {', '.join(INDICATORS)})")
        func, params, col = INDICATORS[n]
        if candles.empty:
            out[n] = pd.Series([], dtype=float, index=candles.index)
            continue
        df = indicator(func, candles, **params)
        out[n] = df[col] if col in df.columns else df.iloc[:, 0]
    return out


def history_candles(
    data_dir: Any,
    exchange: str | None,
    symbol: str,
    timeframe: str | None,
    end_ms: int | None,
    bars: int = 300,
) -> pd.DataFrame:
    """Up to ``bars`` stored candles of ``symbol`` ending before ``end_ms`` (the session's first journalled
    candle, or its clock): the engine journals only the candles that close while it runs (its warm-up is not
    journalled), so the chart starts from the store. Nothing stored (or no exchange / timeframe / end): empty."""
    if not exchange or not timeframe or end_ms is None:
        return _EMPTY
    from workbench.data.store import Store, StoreError
    from workbench.types import Timeframe

    try:
        tf = Timeframe.parse(timeframe).ms
        got = Store(data_dir).candles(
            exchange, symbol, timeframe, start=int(end_ms) - bars * tf, end=int(end_ms)
        )
    except (StoreError, OSError, ValueError):
        return _EMPTY
    return got[["open", "high", "low", "close", "volume"]]


def book_ladder(book: Mapping[str, Any] | None, depth: int = 10) -> list[tuple[str, float, float]]:
    """The ladder: the ``depth`` best asks (highest first, so the best ask sits above the best bid) then the
    ``depth`` best bids, as ``(side, price, amount)``."""
    if not book:
        return []
    asks = sorted((float(p), float(a)) for p, a, *_ in book.get("asks") or [] if float(a) > 0)[:depth]
    bids = sorted(
        ((float(p), float(a)) for p, a, *_ in book.get("bids") or [] if float(a) > 0), reverse=True
    )[:depth]
    return [("ask", p, a) for p, a in reversed(asks)] + [("bid", p, a) for p, a in bids]


@dataclass(frozen=True)
class OrderRequest:
    """A validated manual order: the ``order`` command's arguments and its notional (quote)."""

    args: dict[str, Any]
    notional: float
    needs_confirmation: bool


def validate_order(
    symbol: str | None,
    side: str,
    type_: str,
    amount: float | None,
    price: float | None,
    last_price: float | None,
    *,
    stop: float | None = None,
    take_profit: float | None = None,
    confirm_above: float = 1_000.0,
) -> OrderRequest:
    """Check the form before anything is sent; a ValueError says which field is wrong and why.

    ``price`` is needed for a limit order (and ignored for a market order); a market order needs a last price
    to be valued. Above ``confirm_above`` (quote) the page asks for a confirmation. Stop / take-profit are
    checked for their side and sent with a buy (``args["stop"]``, ``args["take_profit"]``); a sell with them
    is refused (see the module docstring)."""
    if not symbol:
        raise ValueError("symbol: choose a symbol")
    if side not in ("buy", "sell"):
        raise ValueError(f"side: buy or sell, not {side!r}")
    if type_ not in ("market", "limit"):
        raise ValueError(f"type: market or limit, not {type_!r}")
    if amount is None or not math.isfinite(amount) or amount <= 0:
        raise ValueError(f"amount: a positive number of base units, not {amount!r}")
    if type_ == "limit":
        if price is None or not math.isfinite(price) or price <= 0:
            raise ValueError("price: a limit order needs a positive limit price")
        ref = price
    else:
        price = None
        if last_price is None or not (last_price > 0):
            raise ValueError(
                f"{symbol}: no last price yet to value a market order (wait for the first price)"
            )
        ref = float(last_price)
    for name, v in (("stop", stop), ("take-profit", take_profit)):
        if v is not None and (not math.isfinite(v) or v <= 0):
            raise ValueError(f"{name}: a positive price, or empty")
    if stop is not None and ((side == "buy" and stop >= ref) or (side == "sell" and stop <= ref)):
        raise ValueError(f"stop: a {side}'s stop must be {'below' if side == 'buy' else 'above'} {ref:g}")
    if take_profit is not None and (
        (side == "buy" and take_profit <= ref) or (side == "sell" and take_profit >= ref)
    ):
        raise ValueError(
            f"take-profit: a {side}'s target must be {'above' if side == 'buy' else 'below'} {ref:g}"
        )
    if side == "sell" and (stop is not None or take_profit is not None):
        raise ValueError(
            "stop / take-profit: only a buy carries them (spot is long only); send the sell without them"
        )
    notional = float(amount) * ref
    args: dict[str, Any] = {
        "symbol": symbol,
        "side": side,
        "amount": float(amount),
        "type": type_,
        "price": price,
    }
    if stop is not None:
        args["stop"] = float(stop)
    if take_profit is not None:
        args["take_profit"] = float(take_profit)
    return OrderRequest(args, notional, notional > confirm_above)


_EMPTY = pd.DataFrame(columns=["open", "high", "low", "close", "volume"], dtype=float)


def _opt(v: float) -> float | None:
    return None if v is None or v == 0 or (isinstance(v, float) and math.isnan(v)) else float(v)


def bracket_text(b: Mapping[str, Any] | None) -> str:
    """A manual position's protective levels in words (", stop 61,000.00 / take-profit 66,000.00 (armed)")."""
    if not b:
        return ""
    parts = [f"{name} {fmt_price(b.get(key))}" for key, name in (("stop", "stop"), ("take_profit", "take-profit"))
             if b.get(key) is not None]  # fmt: skip
    return f", {' / '.join(parts)} ({b.get('status', '?')})" if parts else ""


class Confirm:
    """A two-step button: the first click shows the question with Yes / No; Yes runs the action."""

    def __init__(self, label: str, question: str, action: Callable[[], None], style: str = "") -> None:
        self.button = W.Button(description=label, button_style=style)
        self.question = question
        self.yes = W.Button(description="Yes", button_style="danger")
        self.no = W.Button(description="No")
        self.text = W.HTML()
        self.bar = W.HBox([])
        self.action = action
        self.on_press: Callable[[], None] = self.ask
        self.button.on_click(lambda _b: self.on_press())
        self.yes.on_click(lambda _b: self.confirm())
        self.no.on_click(lambda _b: self.dismiss())
        self.widget = W.VBox([self.button, self.bar])

    def ask(self, question: str | None = None) -> None:
        self.text.value = f"<b>{html.escape(question or self.question)}</b>"
        self.bar.children = [self.text, self.yes, self.no]

    def confirm(self) -> None:
        self.dismiss()
        self.action()

    def dismiss(self) -> None:
        self.bar.children = []


class TradingPanel:
    def __init__(
        self, data_dir: Any, session: str | None, tz: str, interval_s: float, confirm_above: float
    ) -> None:
        self.data_dir, self.tz, self.confirm_above = data_dir, tz, confirm_above
        self.session = resolve_session(data_dir, session)
        self.channel = None if self.session is None else CommandChannel(data_dir, self.session)
        self.state: SessionState | None = None
        self.symbol = W.Dropdown(description="symbol", options=[])
        self.indicators = W.SelectMultiple(description="indicators", options=list(INDICATORS), rows=5)
        self.chart = figure_widget(
            candles_figure(_EMPTY, dict.fromkeys(INDICATORS, pd.Series([], dtype=float)))
        )
        self.depth = figure_widget(depth_figure([], []))
        self.ladder = W.HTML()
        self.open_orders = W.VBox()
        self.history = W.HTML()
        self.positions = W.VBox()
        self.result = W.HTML()
        self.state_line = W.HTML()
        self._history: dict[str, pd.DataFrame] = {}
        self._order_rows: dict[str, tuple[W.HBox, W.HTML]] = {}
        self._pos_rows: dict[str, tuple[W.HBox, W.HTML]] = {}
        # the order form
        self.side = W.ToggleButtons(options=["buy", "sell"], description="side")
        self.type = W.Dropdown(options=["market", "limit"], description="type")
        self.amount = W.FloatText(description="amount", value=0.0)
        self.price = W.FloatText(description="limit price", value=0.0)
        self.stop = W.FloatText(description="stop", value=0.0)
        self.tp = W.FloatText(description="take-profit", value=0.0)
        self.place = Confirm("Place order", "", self._send_order, "primary")
        self.place.on_press = self.submit
        self.pending: Any = None
        controls = [
            Confirm("Pause", "Pause the strategy (positions stay)?", lambda: self.command("pause"), "warning"),
            Confirm("Resume", "Resume the strategy?", lambda: self.command("resume"), "success"),
            Confirm("Flatten", "Cancel every order and close every position at market?",
                    lambda: self.command("flatten"), "warning"),
            Confirm("KILL SWITCH", "HALT the session: cancel every order and flatten every position?",
                    lambda: self.command("halt", {"flatten": True, "reason": "kill switch (dashboard)"}), "danger"),
        ]  # fmt: skip
        self.controls = controls
        form = W.VBox([W.HTML("<h3>Order</h3>"), self.side, self.type, self.amount, self.price, self.stop, self.tp,
                       self.place.widget])  # fmt: skip
        self.symbol.observe(lambda _c: self._redraw(), names="value")
        self.indicators.observe(lambda _c: self._redraw(), names="value")
        self.loop = session_loop(data_dir, self.session, self.refresh, interval_s)
        if self.session is None:
            body: W.Widget = message(NO_SESSION, "empty")
        else:
            body = W.VBox(
                [
                    self.state_line,
                    W.HBox([self.symbol, self.indicators]),
                    self.chart,
                    W.HBox([W.VBox([W.HTML("<h3>Order book</h3>"), self.ladder]), self.depth]),
                    W.HBox([form, W.VBox([W.HTML("<h3>Controls</h3>"), *(c.widget for c in controls)])]),
                    self.result,
                    W.HTML("<h3>Open orders</h3>"), self.open_orders,
                    W.HTML("<h3>Positions</h3>"), self.positions,
                    W.HTML("<h3>Trade history</h3>"), self.history,
                ]
            )  # fmt: skip
        self.widget = page_frame(f"Trading — {self.session or 'no session'}", body, self.loop)

    # ----------------------------------------------------------------- commands

    def show(self, ack: Mapping[str, Any]) -> None:
        """An ack in words: green when the engine took it, red with its reason when it refused."""
        ok = bool(ack.get("ok"))
        text = str(ack.get("message") or ("ok" if ok else "refused"))
        colour = "#2e7d32" if ok else "#c62828"
        self.result.value = (
            f"<div class='wb-ack wb-{'ok' if ok else 'refused'}' style='color:{colour}'>"
            f"{'ok' if ok else 'refused'}: {html.escape(text)}</div>"
        )

    def command(self, name: str, args: Mapping[str, Any] | None = None) -> None:
        if self.channel is None:
            self.show({"ok": False, "message": "no session"})
            return
        self.result.value = f"<i>sending {html.escape(name)}…</i>"
        run_soon(self.channel.send(name, args), self._done)

    def _done(self, ack: Mapping[str, Any]) -> None:
        self.show(ack)
        self.loop.tick()

    def submit(self) -> None:
        """Validate the form; send, or ask for a confirmation above the threshold."""
        st = self.state
        sym = self.symbol.value
        try:
            req = validate_order(
                sym, self.side.value, self.type.value, self.amount.value, _opt(self.price.value),
                None if st is None or sym is None else st.last_price(sym),
                stop=_opt(self.stop.value), take_profit=_opt(self.tp.value), confirm_above=self.confirm_above,
            )  # fmt: skip
        except ValueError as e:
            self.show({"ok": False, "message": str(e)})
            return
        self.pending = req
        if req.needs_confirmation:
            self.place.ask(
                f"{req.args['side']} {req.args['amount']:g} {sym} ({req.args['type']}), about "
                f"{fmt_money(req.notional, st.quote if st else None)}: send?"
            )
        else:
            self._send_order()

    def _send_order(self) -> None:
        if self.pending is not None:
            req, self.pending = self.pending, None
            self.command("order", req.args)

    # ----------------------------------------------------------------- refresh

    def refresh(self, name: str, state: SessionState, changed: set[str]) -> None:
        self.state = state
        if not state.exists:
            self.result.value = f"<i>no session {html.escape(name)!s} yet</i>"
            return
        rs = state.risk_state or "unknown"
        colour = STATE_COLOURS.get(rs, "#555")
        syms = state.symbols
        if list(self.symbol.options) != syms:
            self.symbol.options = syms
            if syms and self.symbol.value is None:
                self.symbol.value = syms[0]
        sym = self.symbol.value
        last = state.last_price(sym) if sym else None
        self.state_line.value = (
            f"<div class='wb-risk-state'>trading state: <b style='color:{colour}'>{rs}</b> &nbsp; engine: "
            f"{html.escape(state.engine_state or '—')} &nbsp; {html.escape(sym or '')} last {fmt_price(last)}</div>"
        )
        if changed & {"candle", "meta"} or not changed:
            self._redraw()
        if changed & {"book", "meta"} or not changed:
            self._book()
        if changed & {"order", "fill", "position", "price", "meta"} or not changed:
            self._tables(state)

    def _redraw(self) -> None:
        st, sym = self.state, self.symbol.value
        if st is None or sym is None:
            return
        c = self._candles(st, sym)
        chosen = list(self.indicators.value)
        ind = compute_indicators(c, chosen)
        full = {n: ind.get(n, pd.Series([], dtype=float)) for n in INDICATORS}
        new = candles_figure(c, full, title=f"{sym} {st.timeframe or ''}")

        def update(fig: Any) -> None:
            # the same traces always (candles, every indicator, volume): the chosen indicators are visible
            for i, (old, tr) in enumerate(zip(fig.data, new.data, strict=True)):
                old.update(tr.to_plotly_json())
                if 1 <= i <= len(INDICATORS):
                    old.visible = list(INDICATORS)[i - 1] in chosen
            fig.layout.title = new.layout.title

        self.loop.figure(self.chart, update)

    def _candles(self, st: SessionState, sym: str) -> pd.DataFrame:
        """The journal's closed candles, after the store's history up to the first of them (read once)."""
        c = st.candle_frame(sym)
        if sym not in self._history:
            if c.empty:
                clock = [r["ts"] for r in (*st.states[-1:], *([st.prices[sym]] if sym in st.prices else []))]
                end = max(clock) if clock else None
            else:
                end = int(c.index[0].value // 1_000_000)
            self._history[sym] = history_candles(
                self.data_dir, st.spec.get("exchange"), sym, st.timeframe, end
            )
        h = self._history[sym]
        if h.empty:
            return c
        if c.empty:
            return h
        return pd.concat([h[h.index < c.index[0]], c])

    def _book(self) -> None:
        st, sym = self.state, self.symbol.value
        book = None if st is None or sym is None else st.books.get(sym)
        ladder = book_ladder(book)
        self.ladder.value = html_table(
            ("side", "price", "amount"), [(s, fmt_price(p), fmt_amount(a)) for s, p, a in ladder],
            empty="no order book yet",
        )  # fmt: skip
        new = depth_figure((book or {}).get("bids") or [], (book or {}).get("asks") or [])

        def update(fig: Any) -> None:
            for old, tr in zip(fig.data, new.data, strict=True):
                old.x, old.y = tr.x, tr.y

        self.loop.figure(self.depth, update)

    def _row(self, cache: dict[str, tuple[W.HBox, W.HTML]], key: str, label: str, action: Callable[[], None],
             attr: str) -> tuple[W.HBox, W.HTML]:  # fmt: skip
        """The row of ``key`` (kept across refreshes: a widget is made once per order or position)."""
        if key not in cache:
            b = W.Button(description=label, button_style="warning", layout=W.Layout(width="80px"))
            b.on_click(lambda _b: action())
            setattr(b, attr, key)
            text = W.HTML()
            cache[key] = (W.HBox([text, b]), text)
        return cache[key]

    @staticmethod
    def _drop(cache: dict[str, tuple[W.HBox, W.HTML]], keep: set[str]) -> None:
        for k in set(cache) - keep:
            box, _text = cache.pop(k)
            for w in (*box.children, box):
                w.close()

    def _tables(self, st: SessionState) -> None:
        rows: list[W.Widget] = []
        open_now = st.open_orders()
        for o in open_now:
            cid = o["client_order_id"]
            box, text = self._row(
                self._order_rows, cid, "cancel", lambda cid=cid: self.command("cancel", {"client_order_id": cid}),
                "client_order_id",
            )  # fmt: skip
            text.value = html.escape(
                f"{o['symbol']} {o['side']} {fmt_amount(o['amount'])} {o['type']} "
                f"@ {fmt_price(o.get('price'))} — {o['status']} ({cid})"
            )
            rows.append(box)
        self._drop(self._order_rows, {o["client_order_id"] for o in open_now})
        self.open_orders.children = rows or [message("no open orders", "empty")]
        pos_rows: list[W.Widget] = []
        pf = st.portfolio() if st.fills else None
        held = pf.positions() if pf else {}
        for sym, p in held.items():
            box, text = self._row(
                self._pos_rows, sym, "close", lambda s=sym: self.command("close", {"symbol": s}), "symbol"
            )
            last = st.last_price(sym)
            upnl = None if last is None else p.unrealized_pnl(last)
            text.value = html.escape(
                f"{sym} {fmt_amount(p.amount)} @ {fmt_price(p.avg_price)}, last {fmt_price(last)}, "
                f"unrealised {fmt_money(upnl, st.quote)}{bracket_text(st.brackets.get(sym))}"
            )
            pos_rows.append(box)
        self._drop(self._pos_rows, set(held))
        self.positions.children = pos_rows or [message("no positions", "empty")]
        self.history.value = html_table(
            ("time", "symbol", "side", "amount", "price", "fee", "tag", "order"),
            [(fmt_time(f.get("timestamp"), self.tz), f["symbol"], f["side"], fmt_amount(f["amount"]),
              fmt_price(f["price"]), f"{f.get('fee', 0):.6g} {f.get('fee_currency', '')}", f.get("tag", ""),
              f.get("client_order_id", "")) for f in reversed(st.fills[-50:])],
            empty="no trades yet",
        )  # fmt: skip


def page(
    settings: Any = None,
    *,
    session: str | None = None,
    interval_s: float = 1.0,
    confirm_above: float = 1_000.0,
    start: bool = True,
) -> W.Widget:
    """The Trading page; orders above ``confirm_above`` (quote) ask for a confirmation."""
    s = load_settings_or_default(settings)
    panel = TradingPanel(s.data_dir, session, display_tz(s), interval_s, confirm_above)
    if start:
        panel.loop.start()
    else:
        panel.loop.tick(force=True)
    panel.widget.panel = panel  # type: ignore[attr-defined]
    return panel.widget
