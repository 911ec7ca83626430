"""What every live panel shares: the session's state followed from its journal, the live-update loop, the
command channel, formatting for people, and the loading / empty states.

A dashboard owns no state and opens no exchange connection (``docs/architecture.md``, "Dashboards"): everything
it shows is read from the session's journal (:mod:`workbench.trading.journal`), and every command it sends goes
through the journal's command table, answered by the engine (:class:`CommandChannel`).

- :class:`SessionState` folds journal rows into what the pages show (prices, closed candles, books, the latest
  state of each order, fills, positions, equity, risk events, trading states, acks). :class:`JournalFollower`
  feeds it incrementally: each :meth:`~JournalFollower.poll` reads only the rows after the last ``seq`` seen, so
  a page that has been open for hours still reads a handful of rows a second. A journal that does not exist
  yet is the "no session" state, not an error.
- :class:`LiveLoop` is the update loop of one page: an asyncio task in the kernel's event loop (it never blocks
  the page) that polls its followers about once a second and calls the page's ``refresh``. Under Voilà's
  preheated kernel pool it first waits for a visitor (``voila.utils.wait_for_request``, run in a thread so the
  loop stays free; outside Voilà it is skipped). A plotly ``FigureWidget`` is updated only once the browser has
  a view of it (``_view_count >= 1``; an update before that can leave it blank under Voilà): until then its
  latest update is kept and applied when the view appears. The page carries a :class:`Heartbeat`, a tiny
  browser-side widget that beats every 2 s; when the beats stop (the tab is closed) the task stops, so that the
  kernel goes idle and Voilà's culler frees it; a beat that comes back (a background tab) restarts it.
- Formatting goes through :mod:`workbench.metricdefs` (percentages, money), prices and amounts to the market's
  precision where the journal knows it, times in UTC or the configured display timezone.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anywidget
import ipywidgets as W
import numpy as np
import pandas as pd
import traitlets

from workbench.metricdefs import format_metric
from workbench.trading.journal import Journal, JournalError, JournalRow, journal_path

__all__ = [
    "CommandChannel",
    "Heartbeat",
    "JournalFollower",
    "LiveLoop",
    "SessionState",
    "display_tz",
    "figure_widget",
    "fmt_amount",
    "fmt_money",
    "fmt_pct",
    "fmt_price",
    "fmt_time",
    "has_view",
    "html_table",
    "list_sessions",
    "load_settings_or_default",
    "message",
    "resolve_session",
    "session_loop",
    "session_page",
    "session_running",
]

# ------------------------------------------------------------------------------------------- formatting


def _decimals(step: float | None) -> int | None:
    if step is None or not (step > 0 and math.isfinite(step)):
        return None
    return max(0, -math.floor(math.log10(step) + 1e-9))


def fmt_price(value: Any, tick: float | None = None) -> str:
    """A price with the market's precision (``tick``: its price step), else by magnitude: 2 decimals from
    1,000 up, 4 from 1, 6 significant digits below; missing values are an em dash."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(v):
        return "—"
    d = _decimals(tick)
    if d is None:
        d = 2 if abs(v) >= 1000 else 4 if abs(v) >= 1 else max(2, 5 - math.floor(math.log10(abs(v) or 1)))
    return f"{v:,.{d}f}"


def fmt_amount(value: Any, step: float | None = None) -> str:
    """A base amount to the market's amount step (else up to 8 significant digits)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    d = _decimals(step)
    return f"{v:,.{d}f}" if d is not None else f"{v:.8g}"


def fmt_pct(value: Any) -> str:
    """A fraction as a percentage, as the metric registry writes returns (``0.0123`` -> ``1.23%``)."""
    return format_metric("total_return", value)


def fmt_money(value: Any, currency: str | None = None) -> str:
    """Money in the quote currency, as the metric registry writes it (2 decimals)."""
    return format_metric("final_equity", value, currency)


def fmt_time(ms: Any, tz: str = "UTC") -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM:SS TZ`` in ``tz`` (the configured display timezone)."""
    if ms is None:
        return "—"
    t = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    if tz and tz != "UTC":
        t = t.astimezone(ZoneInfo(tz))
    return t.strftime("%Y-%m-%d %H:%M:%S ") + (tz or "UTC")


def html_table(headers: Iterable[str], rows: Iterable[Iterable[Any]], *, empty: str = "none") -> str:
    """A small HTML table (cells escaped); ``empty`` is shown instead of a table with no rows."""
    rows = [list(r) for r in rows]
    if not rows:
        return f"<i class='wb-empty'>{html.escape(empty)}</i>"
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px'>{html.escape(str(c))}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return f"<table class='wb-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def message(text: str, kind: str = "info") -> W.HTML:
    """A loading / empty / error state in words (never a traceback)."""
    colour = {"info": "#555", "empty": "#777", "error": "#c62828", "ok": "#2e7d32"}.get(kind, "#555")
    return W.HTML(
        f"<div class='wb-msg wb-{kind}' style='color:{colour};padding:6px'>{html.escape(text)}</div>"
    )


# ------------------------------------------------------------------------------------------- sessions


def load_settings_or_default(settings: Any = None) -> Any:
    """The settings passed in, else the workbench's configuration (``load_settings()``)."""
    if settings is not None:
        return settings
    from workbench.config import load_settings

    return load_settings()


def display_tz(settings: Any) -> str:
    """The configured display timezone (``general.display_timezone``), UTC by default."""
    general = getattr(settings, "general", None)
    return str(getattr(general, "display_timezone", "UTC") or "UTC")


def _lock_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "trading" / "locks" / f"session-{name}.lock"


def session_running(data_dir: str | Path, name: str) -> bool:
    """Whether an engine holds the session's lock (a killed engine frees it)."""
    from workbench.trading.session import SessionLock  # not the engine's module: that one loads ccxt

    return SessionLock.holder(_lock_path(Path(data_dir), name)) is not None


def list_sessions(data_dir: str | Path) -> list[dict[str, Any]]:
    """Every session under ``<data>/trading/sessions/``: name, running, mode, symbols, engine state, risk state
    (ACTIVE / REDUCING / HALTED), last equity. A journal that cannot be read is listed with its error."""
    root = Path(data_dir) / "trading" / "sessions"
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for p in sorted(root.iterdir()):
        path = p / "journal.sqlite"
        if not path.is_file():
            continue
        row: dict[str, Any] = {"session": p.name, "running": session_running(data_dir, p.name)}
        try:
            with Journal(path, readonly=True) as j:
                spec = j.meta_get("spec") or {}
                st = j.latest("state")
                ev = j.latest("risk")
                eq = j.latest("equity")
        except JournalError as e:
            row["error"] = str(e)
            out.append(row)
            continue
        row.update(
            mode=spec.get("mode"),
            symbols=list(spec.get("symbols") or []),
            state=None if st is None else st.data.get("state"),
            risk_state=_latest_risk_state(
                [] if st is None else [{"seq": st.seq, **st.data}],
                [] if ev is None else [{"seq": ev.seq, **ev.data}],
            ),
            equity=None if eq is None else eq.data.get("equity"),
            updated_ms=None if st is None else st.ts,
        )
        out.append(row)
    return out


def resolve_session(data_dir: str | Path, name: str | None = None) -> str | None:
    """``name`` if given, else the running session (the first by name if several), else the only session,
    else the most recently updated one; ``None`` when there is none."""
    if name:
        return name
    sessions = [s for s in list_sessions(data_dir) if "error" not in s]
    if not sessions:
        return None
    running = [s for s in sessions if s["running"]]
    if running:
        return running[0]["session"]
    return max(sessions, key=lambda s: s.get("updated_ms") or 0)["session"]


# -------------------------------------------------------------------------------------- session state


def _latest_risk_state(
    states: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]]
) -> str | None:
    best: tuple[int, str] | None = None
    for rows, key in ((states, "risk"), (events, "state")):
        for r in rows:
            v = r.get(key)
            if v in ("ACTIVE", "REDUCING", "HALTED") and (best is None or r["seq"] > best[0]):
                best = (int(r["seq"]), str(v))
    return None if best is None else best[1]


@dataclass
class SessionState:
    """What the pages show of one session, folded from its journal rows in ``seq`` order (:meth:`apply`)."""

    name: str
    seq: int = 0
    spec: dict[str, Any] = field(default_factory=dict)
    markets: dict[str, Any] = field(default_factory=dict)
    initial_balances: dict[str, float] = field(default_factory=dict)
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    candles: dict[tuple[str, str], dict[int, list[float]]] = field(default_factory=dict)
    books: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    fills: list[dict[str, Any]] = field(default_factory=list)
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)
    equity: list[tuple[int, float]] = field(default_factory=list)
    risk_events: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)
    brackets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """symbol -> the manual position's stop-loss / take-profit (``stop``, ``take_profit``: prices; ``status``:
    pending until the entry fills, armed): the active ones only, from the ``bracket`` rows."""
    exists: bool = False

    def apply(self, rows: Iterable[JournalRow]) -> set[str]:
        """Fold ``rows`` (in seq order, after :attr:`seq`); returns the kinds that changed."""
        changed: set[str] = set()
        for r in rows:
            if r.seq <= self.seq:
                continue
            self.seq = r.seq
            d = r.data if isinstance(r.data, dict) else {}
            k = r.kind
            if k == "price":
                self.prices[str(d.get("symbol"))] = {"ts": r.ts, **d}
            elif k == "candle":
                c = d.get("candle") or []
                if len(c) >= 6:
                    self.candles.setdefault((str(d.get("symbol")), str(d.get("timeframe"))), {})[
                        int(c[0])
                    ] = [float(x) for x in c[1:6]]
            elif k == "book":
                self.books[str(d.get("symbol"))] = {"ts": r.ts, **d}
            elif k == "order":
                self.orders[str(r.key)] = d
            elif k == "fill":
                self.fills.append(d)
            elif k == "position":
                self.positions[str(r.key)] = {"ts": r.ts, **d}
            elif k == "equity":
                self.equity.append((r.ts, float(d.get("equity", math.nan))))
            elif k == "risk":
                self.risk_events.append({"seq": r.seq, "ts": r.ts, **d})
            elif k == "state":
                self.states.append({"seq": r.seq, "ts": r.ts, **d})
            elif k == "ack":
                self.acks[str(r.key)] = d
            elif k == "log":
                self.logs.append({"seq": r.seq, "ts": r.ts, **d})
            elif k == "bracket":
                if d.get("status") in ("pending", "armed"):
                    self.brackets[str(r.key)] = {"ts": r.ts, **d}
                else:
                    self.brackets.pop(str(r.key), None)
            else:
                continue
            changed.add(k)
        return changed

    # ------------------------------------------------------------------ views

    @property
    def symbols(self) -> list[str]:
        """The session's symbols (its spec), else every symbol seen in its rows."""
        syms = list(self.spec.get("symbols") or [])
        for s in [*self.prices, *(s for s, _ in self.candles), *self.books]:
            if s not in syms:
                syms.append(s)
        return syms

    @property
    def timeframe(self) -> str | None:
        return self.spec.get("timeframe") or next((tf for _, tf in self.candles), None)

    @property
    def quote(self) -> str:
        from workbench.metricdefs import quote_currency

        return quote_currency(self.symbols) or next(iter(self.initial_balances), "") or ""

    @property
    def engine_state(self) -> str | None:
        """The last engine state row (STARTING, RUNNING, RISK, STOPPED)."""
        return self.states[-1].get("state") if self.states else None

    @property
    def risk_state(self) -> str | None:
        """ACTIVE / REDUCING / HALTED as of the latest row that says: a state row's ``risk`` or a risk event's
        ``state`` (a halt by command writes only the risk event)."""
        return _latest_risk_state(self.states, self.risk_events)

    def candle_frame(self, symbol: str, timeframe: str | None = None) -> pd.DataFrame:
        """The closed candles of ``symbol`` as an OHLCV frame with a UTC DatetimeIndex (empty if none)."""
        tf = timeframe or self.timeframe
        rows = self.candles.get((symbol, str(tf)), {})
        if not rows:
            return pd.DataFrame(
                columns=["open", "high", "low", "close", "volume"], index=pd.DatetimeIndex([], tz="UTC")
            )
        ts = sorted(rows)
        df = pd.DataFrame([rows[t] for t in ts], columns=["open", "high", "low", "close", "volume"])
        df.index = pd.to_datetime(ts, unit="ms", utc=True)
        return df

    def last_price(self, symbol: str) -> float | None:
        p = self.prices.get(symbol, {}).get("last")
        if p is None:
            c = self.candle_frame(symbol)
            return None if c.empty else float(c["close"].iloc[-1])
        return float(p)

    def open_orders(self) -> list[dict[str, Any]]:
        from workbench.types import OrderStatus

        out = []
        for o in self.orders.values():
            try:
                if OrderStatus(o.get("status", "INITIALIZED")).is_open:
                    out.append(o)
            except ValueError:
                continue
        return out

    def portfolio(self) -> Any:
        """The portfolio rebuilt from the fills (:class:`workbench.trading.portfolio.Portfolio`)."""
        from workbench.trading.journal import fill_from_dict
        from workbench.trading.portfolio import Portfolio

        return Portfolio.from_fills(
            self.quote, self.initial_balances or None, map(fill_from_dict, self.fills)
        )

    def equity_series(self) -> pd.Series:
        if not self.equity:
            return pd.Series([], dtype=float, index=pd.DatetimeIndex([], tz="UTC"), name="equity")
        ts, eq = zip(*self.equity, strict=True)
        s = pd.Series(eq, index=pd.to_datetime(list(ts), unit="ms", utc=True), name="equity")
        return s[~s.index.duplicated(keep="last")].sort_index()


class JournalFollower:
    """Follows one session's journal incrementally into a :class:`SessionState` (read-only; never creates it).

    ``poll`` reads the rows after the last ``seq`` seen (at most ``batch`` at a time, so that a long journal is
    caught up over a few ticks without a long pause), and the meta (spec, markets, initial balances) once."""

    def __init__(self, data_dir: str | Path, session: str, *, batch: int = 20_000) -> None:
        self.data_dir = Path(data_dir)
        self.session = session
        self.path = journal_path(self.data_dir, session)
        self.state = SessionState(session)
        self.batch = batch
        self._j: Journal | None = None
        self.error: str | None = None

    def _open(self) -> Journal | None:
        if self._j is None and self.path.is_file():
            try:
                self._j = Journal(self.path, readonly=True)
            except JournalError as e:
                self.error = str(e)
                return None
            self.state.exists = True
        return self._j

    def poll(self) -> set[str]:
        """Read what is new; returns the kinds that changed (``{"meta"}`` on the first read of the meta)."""
        j = self._open()
        if j is None:
            return set()
        changed: set[str] = set()
        if not self.state.spec:
            spec = j.meta_get("spec") or {}
            if spec:
                self.state.spec = dict(spec)
                changed.add("meta")
            self.state.markets = dict(j.meta_get("markets") or {})
            self.state.initial_balances = dict(j.meta_get("initial_balances") or {})
        changed |= self.state.apply(j.read(after_seq=self.state.seq, limit=self.batch))
        return changed

    def close(self) -> None:
        if self._j is not None:
            self._j.close()
            self._j = None


# --------------------------------------------------------------------------------------------- commands


class CommandChannel:
    """Sends commands to a running session through its journal and waits for the engine's ack (as
    ``workbench trade ...`` does). The names are the engine's: order, cancel, close, pause, resume, flatten,
    halt, cancel-all, status. A session that is not running, or no ack in time, is a refusal in words."""

    def __init__(self, data_dir: str | Path, session: str, *, timeout_s: float = 15.0) -> None:
        self.data_dir = Path(data_dir)
        self.session = session
        self.timeout_s = timeout_s

    def _journal(self) -> Journal:
        path = journal_path(self.data_dir, self.session)
        if not path.is_file():
            raise JournalError(f"no session {self.session!r} (no journal at {path})")
        if not session_running(self.data_dir, self.session):
            raise JournalError(
                f"session {self.session!r} is not running: start it with `workbench trade run`"
            )
        return Journal(path)

    async def send(self, name: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The engine's ack (``ok``, ``message``, ...), or ``{"ok": False, "message": why}``."""
        try:
            j = self._journal()
        except JournalError as e:
            return {"ok": False, "message": str(e)}
        try:
            cid = j.send_command(name, dict(args or {}), source="dashboard")
            ack = await j.wait_ack_async(cid, self.timeout_s)
        finally:
            j.close()
        if ack is None:
            return {
                "ok": False,
                "message": f"session {self.session!r} did not acknowledge {name!r} within {self.timeout_s:.0f} s",
            }
        return ack


def run_soon(coro: Any, done: Callable[[Any], None]) -> None:
    """Run ``coro`` (a command: it returns an ack) in the kernel's event loop without blocking it and pass its
    result to ``done``; an exception becomes a refusal in words. With no running loop (a test, a plain script)
    it runs to completion here."""

    def failed(e: BaseException) -> dict[str, Any]:
        return {"ok": False, "message": f"not sent: {type(e).__name__}: {str(e)[:300]}"}

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        try:
            result = asyncio.run(coro)
        except Exception as e:
            result = failed(e)
        done(result)
        return

    def finished(t: asyncio.Task) -> None:
        if t.cancelled():
            done({"ok": False, "message": "canceled"})
        elif t.exception() is not None:
            done(failed(t.exception()))  # type: ignore[arg-type]
        else:
            done(t.result())

    loop.create_task(coro).add_done_callback(finished)


# ------------------------------------------------------------------------------------------------ figures

PLOTLY_ESM_ENV = "WORKBENCH_PLOTLY_ESM"
"""Set by ``workbench dashboards`` (:func:`workbench.services.start_dashboards`) in the server's environment,
which its kernels inherit: the path, relative to the server's base URL, where it serves plotly's widget bundle."""

_SHARED_FIGURE: type | None = None


def _shim_esm(path: str) -> str:
    """A few lines of ESM that import plotly's widget bundle from the dashboards server (one download and one
    evaluation per page, whatever the number of figures) and hand its render functions to anywidget."""
    return f"""
    const el = document.getElementById("jupyter-config-data");
    const base = new URL((el && JSON.parse(el.textContent).baseUrl) || "/", window.location.href);
    const mod = await import(new URL({json.dumps(path)}, base).href);
    export default mod.default;
    """


def _is_ns_times(v: Any) -> bool:
    return (
        isinstance(v, np.ndarray)
        and v.dtype.kind == "M"
        and np.datetime_data(v.dtype)[0] in ("ns", "ps", "fs")
    )


def widget_safe(fig: Any) -> Any:
    """``fig`` (changed in place) with its traces' time arrays at microsecond precision.

    plotly's widget serialiser sends a numpy array other than small numbers through ``tolist()``; for
    ``datetime64[ns]`` that gives integers, and the browser draws a date axis counted in nanoseconds
    (1.7e18). Microseconds become ``datetime`` objects, sent as ISO dates. A static figure (HTML report) is
    unaffected."""
    for tr in getattr(fig, "data", ()):
        for key, v in list(getattr(tr, "_props", {}).items()):
            if _is_ns_times(v):
                tr[key] = None  # plotly ignores an assignment of equal values (the same times in us)
                tr[key] = v.astype("datetime64[us]")
    return fig


def figure_widget(fig: Any = None) -> Any:
    """A plotly ``FigureWidget`` of ``fig``.

    plotly's ``FigureWidget`` is an anywidget whose ``_esm`` is its whole JavaScript bundle (about 5 MB): each
    figure on a page sends it again and the browser evaluates it again (five figures: 25 MB through the
    websocket). Served by ``workbench dashboards`` (:data:`PLOTLY_ESM_ENV` set), the figure's ``_esm`` is a shim
    that imports the bundle once from the server; elsewhere (JupyterLab, plain Voilà) it is plotly's own class.
    """
    import plotly.graph_objects as go

    if fig is not None:
        fig = widget_safe(fig)
    path = os.environ.get(PLOTLY_ESM_ENV, "").strip()
    if not path:
        return go.FigureWidget(fig)
    global _SHARED_FIGURE
    if _SHARED_FIGURE is None or getattr(_SHARED_FIGURE, "_wb_path", None) != path:
        _SHARED_FIGURE = type(
            "SharedBundleFigure", (go.FigureWidget,), {"_esm": _shim_esm(path), "_wb_path": path}
        )
    return _SHARED_FIGURE(fig)


# -------------------------------------------------------------------------------------------- live loop


class Heartbeat(anywidget.AnyWidget):
    """An invisible widget whose browser view sets ``beat`` (the browser's clock, ms) every 2 s while the page is
    open; :attr:`last_beat` is when the kernel last heard one (monotonic seconds)."""

    _esm = """
    function render({ model, el }) {
      el.style.display = "none";
      const beat = () => { model.set("beat", Date.now()); model.save_changes(); };
      beat();
      const id = setInterval(beat, 2000);
      return () => clearInterval(id);
    }
    export default { render };
    """
    beat = traitlets.Int(0).tag(sync=True)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.last_beat: float | None = None
        self.observe(self._on_beat, names="beat")

    def _on_beat(self, _change: Any) -> None:
        self.last_beat = time.monotonic()


def has_view(widget: Any) -> bool:
    """Whether the browser has drawn ``widget`` (ipywidgets' ``_view_count``, tracked from 0 by :class:`LiveLoop`)."""
    n = getattr(widget, "_view_count", None)
    return n is not None and n >= 1


def _wait_for_request() -> None:
    """Under Voilà's preheated kernel pool, block until a visitor's request reaches this kernel; elsewhere
    (JupyterLab, tests, Voilà without preheating) return at once."""
    try:
        from voila.utils import wait_for_request
    except ImportError:
        return
    wait_for_request()


class LiveLoop:
    """A page's update loop: ``refresh(state, changed)`` after each poll that changed something.

    :meth:`tick` is one poll + refresh (what the task runs about once a second; tests call it directly).
    :meth:`start` starts the task in the running event loop (the kernel's). :meth:`figure` registers a
    FigureWidget update that is applied only once the figure has a view. The task stops when the heartbeat has
    been silent for ``stale_s`` after the first beat (75 s: a background tab's timers may run once a minute), or
    when no beat came within ``connect_s`` of the start; a later beat (the tab is back) starts it again."""

    def __init__(
        self,
        followers: Mapping[str, JournalFollower],
        refresh: Callable[[str, SessionState, set[str]], None],
        *,
        interval_s: float = 1.0,
        stale_s: float = 75.0,
        connect_s: float = 120.0,
        status: W.HTML | None = None,
    ) -> None:
        self.followers = dict(followers)
        self.refresh = refresh
        self.interval_s = interval_s
        self.stale_s = stale_s
        self.connect_s = connect_s
        self.heartbeat = Heartbeat()
        self.heartbeat.observe(self._on_beat, names="beat")
        self.status = status or W.HTML()
        self._pending: dict[int, tuple[Any, Callable[[Any], None]]] = {}
        self.task: asyncio.Task | None = None
        self.stopped = False
        self.ticks = 0
        self.stop_reason: str | None = None

    def _on_beat(self, _change: Any) -> None:
        """A beat after the task stopped for silence (a tab that was in the background, where browsers throttle
        timers to once a minute, or a laptop that slept): the page is back, so the updates start again."""
        if self.stopped and self.stop_reason in ("page closed", "no browser connected"):
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
                self.stopped, self.stop_reason = False, None
                self.task = loop.create_task(self.run(wait_for_visitor=False))

    def figure(self, fig: Any, update: Callable[[Any], None]) -> None:
        """Apply ``update(fig)`` now if the browser has drawn ``fig``, else when it has (the latest one wins)."""
        if getattr(fig, "_view_count", None) is None:
            fig._view_count = 0  # start tracking the browser's views
        if has_view(fig):
            self._pending.pop(id(fig), None)
            with fig.batch_update():
                update(fig)
        else:
            self._pending[id(fig)] = (fig, update)

    def _flush_pending(self) -> None:
        for key, (fig, update) in list(self._pending.items()):
            if has_view(fig):
                del self._pending[key]
                with fig.batch_update():
                    update(fig)

    def tick(self, *, force: bool = False) -> dict[str, set[str]]:
        """Poll every follower and refresh what changed (everything with ``force``); returns the changes."""
        self.ticks += 1
        changes: dict[str, set[str]] = {}
        for name, f in self.followers.items():
            try:
                changed = f.poll()
            except JournalError as e:
                self.status.value = f"<span style='color:#c62828'>{html.escape(str(e))}</span>"
                continue
            if changed or force:
                changes[name] = changed
                try:
                    self.refresh(name, f.state, changed)
                except Exception as e:  # a page's bug shows in words; the loop goes on
                    self.status.value = (
                        f"<span style='color:#c62828'>update failed: {html.escape(type(e).__name__)}: "
                        f"{html.escape(str(e)[:300])}</span>"
                    )
        self._flush_pending()
        return changes

    def _page_gone(self, started: float) -> bool:
        hb = self.heartbeat.last_beat
        now = time.monotonic()
        if hb is None:
            return now - started > self.connect_s
        return now - hb > self.stale_s

    async def run(self, *, wait_for_visitor: bool = True) -> None:
        """The task: wait for a visitor (preheated Voilà), then tick every ``interval_s`` until the page is gone."""
        loop = asyncio.get_running_loop()
        if wait_for_visitor:
            with contextlib.suppress(Exception):
                await loop.run_in_executor(None, _wait_for_request)
        started = time.monotonic()
        try:
            while not self.stopped:
                self.tick()
                if self._page_gone(started):
                    self.stop_reason = "page closed" if self.heartbeat.last_beat else "no browser connected"
                    break
                await asyncio.sleep(self.interval_s)
        finally:
            self.stop()

    def start(self) -> asyncio.Task | None:
        """Start :meth:`run` in the running event loop; without one (a plain script) only the first tick runs."""
        self.tick(force=True)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                loop = asyncio.get_event_loop_policy().get_event_loop()
            except RuntimeError:
                return None
            if not loop.is_running():
                return None
        self.task = loop.create_task(self.run())
        return self.task

    def stop(self) -> None:
        self.stopped = True
        for f in self.followers.values():
            f.close()
        if self.stop_reason is None:
            self.stop_reason = "stopped"
        self.status.value = (
            f"<span style='color:#777'>live updates stopped ({html.escape(self.stop_reason)})</span>"
        )


NO_SESSION = "no session running: start one with `workbench up`"
STATE_COLOURS = {"ACTIVE": "#2e7d32", "REDUCING": "#ef6c00", "HALTED": "#c62828"}
"""The trading states' colours (grey for an unknown one)."""


def session_loop(
    data_dir: Any,
    session: str | None,
    refresh: Callable[[str, SessionState, set[str]], None],
    interval_s: float,
) -> LiveLoop:
    """The live loop of a one-session page: following ``session``'s journal (nothing when there is none)."""
    followers = {} if session is None else {session: JournalFollower(data_dir, session)}
    return LiveLoop(followers, refresh, interval_s=interval_s)


def session_page(title: str, session: str | None, loop: LiveLoop, children: list[W.Widget]) -> W.VBox:
    """A one-session page: ``children`` under its title, or the empty state when no session runs."""
    body = message(NO_SESSION, "empty") if session is None else W.VBox(children)
    return page_frame(f"{title} — {session or 'no session'}", body, loop)


def page_frame(title: str, body: W.Widget, loop: LiveLoop | None = None) -> W.VBox:
    """A page: its title, the loop's status line, the body, and the (invisible) heartbeat."""
    parts: list[W.Widget] = [W.HTML(f"<h2 style='margin:4px 0'>{html.escape(title)}</h2>")]
    if loop is not None:
        parts.append(loop.status)
    parts.append(body)
    if loop is not None:
        parts.append(loop.heartbeat)
    box = W.VBox(parts)
    box.add_class("wb-page")
    return box
