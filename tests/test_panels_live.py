"""The live panels (Overview, Trading, Portfolio, Risk, Settings) and panels/common.py against real journals
written here with workbench.trading.journal.Journal; the widgets are built without a front end and their
data checked. The engine's side of a command is played by a thread that answers through the same journal."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workbench.config import load_settings
from workbench.panels import common, overview, portfolio, risk, settings, trading
from workbench.panels.common import JournalFollower, LiveLoop, SessionState, fmt_pct, fmt_price
from workbench.trading.engine import SessionLock
from workbench.trading.journal import Journal, journal_path
from workbench.trading.portfolio import Portfolio
from workbench.types import Fill, Order, OrderStatus, OrderType, Side
from workbench.viz.live import (
    candles_figure,
    depth_curves,
    depth_figure,
    limit_usage_figure,
    usage_colour,
)

ROOT = Path(__file__).resolve().parents[1]

SYM = "BTC/USDT"
T0 = 1_764_547_200_000  # 2025-12-01 00:00 UTC
MIN = 60_000


def _settings(tmp_path: Path, **risk_over):
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    (cfg / "workbench.yml").write_text(yaml.safe_dump({"paths": {"data": str(tmp_path / "data")}}))
    over = {f"trading.risk.{k}": v for k, v in risk_over.items()}
    return load_settings(cfg, env={}, overrides=over)


def _candle(i: int, close: float) -> list[float]:
    return [T0 + i * MIN, close - 1, close + 2, close - 2, close, 10.0 + i]


def _journal(data: Path, name: str = "s1", n: int = 30) -> Journal:
    j = Journal(journal_path(data, name))
    j.meta_set_many(
        {
            "spec": {"name": name, "symbols": [SYM], "timeframe": "1m", "mode": "paper"},
            "initial_balances": {"USDT": 10_000.0},
            "markets": {SYM: {"amount_step": 0.0001}},
        }
    )
    j.record_state(T0, "STARTING", "pid 1", risk="ACTIVE")
    j.record_state(T0, "RUNNING", "", risk="ACTIVE")
    j.append_many([Journal.candle_row(SYM, "1m", _candle(i, 100.0 + i)) for i in range(n)])
    j.record_price(T0 + n * MIN, SYM, 130.0)
    j.record_book(T0 + n * MIN, SYM, [[129.9, 1.0], [129.8, 2.0], [129.5, 0.5]], [[130.1, 1.5], [130.3, 1.0]])
    for i, e in enumerate([10_000.0, 10_200.0, 9_900.0]):
        j.record_equity(T0 + i * MIN, e)
    buy = Order("m-1", SYM, Side.BUY, OrderType.MARKET, 10.0, status=OrderStatus.FILLED, filled=10.0,
                avg_price=110.0, created_ms=T0, updated_ms=T0, tag="manual")  # fmt: skip
    j.record_fill(Fill("m-1", SYM, Side.BUY, 10.0, 110.0, 1.1, "USDT", T0, "t1", tag="manual"), buy)
    j.record_order(Order("l-1", SYM, Side.BUY, OrderType.LIMIT, 1.0, price=120.0, status=OrderStatus.ACCEPTED,
                         created_ms=T0 + MIN, updated_ms=T0 + MIN, tag="strategy"))  # fmt: skip
    j.record_risk(T0 + 2 * MIN, "refused", "max_order_notional: 50,000 > limit 10,000", client_order_id="m-2")
    return j


# --------------------------------------------------------------------------------------- formatting


def test_formats_use_the_metric_registry_and_market_precision():
    assert fmt_pct(0.0123) == "1.23%"
    assert common.fmt_money(1234.5, "USDT") == "1,234.50 USDT"
    assert fmt_price(65432.123) == "65,432.12"
    assert fmt_price(1.23456789, tick=0.01) == "1.23"
    assert common.fmt_amount(0.123456, step=0.001) == "0.123"
    assert fmt_price(None) == "—"
    assert common.fmt_time(T0) == "2025-12-01 00:00:00 UTC"
    assert common.fmt_time(T0, "Europe/Paris") == "2025-12-01 01:00:00 Europe/Paris"


# -------------------------------------------------------------------------------------- following


def test_follower_reads_incrementally_by_seq(tmp_path: Path):
    j = _journal(tmp_path)
    f = JournalFollower(tmp_path, "s1")
    changed = f.poll()
    assert {"candle", "price", "book", "equity", "fill", "order", "risk", "state", "meta"} <= changed
    st = f.state
    assert st.seq == j.last_seq()
    assert len(st.candle_frame(SYM)) == 30
    assert f.poll() == set()  # nothing new: nothing re-read
    j.record_candle(SYM, "1m", _candle(30, 131.0))
    assert f.poll() == {"candle"}
    c = st.candle_frame(SYM)
    assert len(c) == 31 and c["close"].iloc[-1] == 131.0
    assert st.seq == j.last_seq()
    assert [o["client_order_id"] for o in st.open_orders()] == ["l-1"]
    f.close()
    j.close()


def test_follower_of_a_session_not_started_yet_is_empty_not_an_error(tmp_path: Path):
    f = JournalFollower(tmp_path, "nothing")
    assert f.poll() == set() and not f.state.exists
    j = _journal(tmp_path, "nothing", n=2)
    assert "candle" in f.poll() and f.state.exists
    j.close()


def test_follower_catches_up_in_batches(tmp_path: Path):
    j = _journal(tmp_path, n=50)
    f = JournalFollower(tmp_path, "s1", batch=20)
    f.poll()
    assert f.state.seq < j.last_seq()
    for _ in range(10):
        f.poll()
    assert f.state.seq == j.last_seq() and len(f.state.candle_frame(SYM)) == 50
    j.close()


def test_sessions_listed_with_state_and_running(tmp_path: Path):
    data = tmp_path / "data"
    j = _journal(data, "a")
    j2 = _journal(data, "b")
    j2.record_state(T0 + 5 * MIN, "RISK", "drawdown 25% > 20%", risk="HALTED")
    lock = SessionLock(data / "trading" / "locks" / "session-b.lock", "session b")
    lock.acquire()
    try:
        rows = {r["session"]: r for r in common.list_sessions(data)}
        assert rows["a"]["risk_state"] == "ACTIVE" and not rows["a"]["running"]
        assert rows["b"]["risk_state"] == "HALTED" and rows["b"]["running"]
        assert common.resolve_session(data) == "b"
    finally:
        lock.release()
    assert common.list_sessions(tmp_path / "none") == []
    assert common.resolve_session(tmp_path / "none") is None
    j.close()
    j2.close()


# ------------------------------------------------------------------------------------ live loop


def test_figure_updates_wait_for_a_view(tmp_path: Path):
    import plotly.graph_objects as go

    loop = LiveLoop({}, lambda *a: None)
    fig = go.FigureWidget(go.Figure(go.Scatter(y=[])))
    loop.figure(fig, lambda f: setattr(f.data[0], "y", [1, 2, 3]))
    assert fig._view_count == 0 and len(fig.data[0].y or ()) == 0  # kept back: no view yet
    loop.figure(fig, lambda f: setattr(f.data[0], "y", [4, 5]))  # the latest update wins
    loop.tick()
    assert len(fig.data[0].y or ()) == 0
    fig._view_count = 1  # the browser drew it
    loop.tick()
    assert list(fig.data[0].y) == [4, 5]


def test_loop_stops_when_the_heartbeat_stops(tmp_path: Path):
    j = _journal(tmp_path)
    seen: list[set[str]] = []
    loop = LiveLoop({"s1": JournalFollower(tmp_path, "s1")}, lambda n, s, c: seen.append(c),
                    interval_s=0.01, stale_s=0.2, connect_s=60)  # fmt: skip

    async def main():
        task = asyncio.get_running_loop().create_task(loop.run())
        while not seen:  # the browser beats (what its view sends) until the first read
            loop.heartbeat.beat += 1
            await asyncio.sleep(0.01)
        j.record_candle(SYM, "1m", _candle(30, 131.0))
        while len(seen) < 2:
            loop.heartbeat.beat += 1
            await asyncio.sleep(0.01)
        await asyncio.wait_for(task, timeout=30)  # no more beats: the tab is closed
        assert loop.stopped and loop.stop_reason == "page closed"
        ticks = loop.ticks
        loop.heartbeat.beat += 1  # the tab is back (it was in the background)
        assert not loop.stopped and loop.task is not task
        await asyncio.wait_for(loop.task, timeout=30)
        assert loop.ticks > ticks

    asyncio.run(main())
    assert loop.stopped and loop.stop_reason == "page closed"
    assert seen[1] == {"candle"}  # the candle written while it ran, and only it, was read
    assert "stopped" in loop.status.value
    j.close()


def test_loop_without_a_browser_stops_after_connect_timeout(tmp_path: Path):
    loop = LiveLoop({}, lambda *a: None, interval_s=0.01, connect_s=0.05)
    asyncio.run(asyncio.wait_for(loop.run(), timeout=30))
    assert loop.stop_reason == "no browser connected"


def test_a_failing_refresh_shows_in_words_and_the_loop_goes_on(tmp_path: Path):
    j = _journal(tmp_path)

    def bad(*_a):
        raise RuntimeError("boom")

    loop = LiveLoop({"s1": JournalFollower(tmp_path, "s1")}, bad)
    loop.tick()
    assert "update failed: RuntimeError: boom" in loop.status.value
    j.close()


# ------------------------------------------------------------------------------------- figures


def test_depth_curves_cumulate_from_the_best_price():
    (bp, bq), (ap, aq) = depth_curves([[99, 1], [100, 2], [98, 0]], [[102, 1], [101, 3]])
    assert bp == [100, 99] and bq == [2, 3]
    assert ap == [101, 102] and aq == [3, 4]
    fig = depth_figure([[99, 1]], [[101, 2]])
    assert list(fig.data[0].y) == [1] and list(fig.data[1].x) == [101]


def test_limit_usage_figure_colours_and_caps():
    fig = limit_usage_figure(
        [{"label": "a", "fraction": 0.1}, {"label": "b", "fraction": 0.7}, {"label": "c", "fraction": 3.0},
         {"label": "d", "fraction": None}]
    )  # fmt: skip
    assert list(fig.data[0].x) == [0.1, 0.7, 1.2, 0.0]
    assert list(fig.data[0].marker.color) == [
        usage_colour(0.1),
        usage_colour(0.7),
        usage_colour(3),
        usage_colour(None),
    ]
    assert len({usage_colour(0.1), usage_colour(0.7), usage_colour(3.0), usage_colour(None)}) == 4


def test_candles_figure_traces():
    st = SessionState("x")
    st.apply(_journal_rows())
    c = st.candle_frame(SYM)
    fig = candles_figure(c, trading.compute_indicators(c, ["SMA 20"]))
    assert [t.type for t in fig.data] == ["candlestick", "scatter", "bar"]
    assert pd.isna(fig.data[1].y[18]) and fig.data[1].y[19] == pytest.approx(c["close"].iloc[:20].mean())
    with pytest.raises(ValueError, match="unknown indicator 'RSI 99'"):
        trading.compute_indicators(c, ["RSI 99"])


def _journal_rows():
    from workbench.trading.journal import JournalRow

    return [JournalRow(i + 1, T0, "candle", f"{SYM}|1m", {"symbol": SYM, "timeframe": "1m",
            "candle": _candle(i, 100.0 + i)}) for i in range(30)]  # fmt: skip


# ------------------------------------------------------------------------------------ overview


def test_overview_data(tmp_path: Path):
    j = _journal(tmp_path)
    f = JournalFollower(tmp_path, "s1")
    f.poll()
    m = overview.market_summary(f.state, SYM)
    assert m["last"] == 130.0
    assert m["change_24h"] == pytest.approx(130.0 / 99.0 - 1)  # the first open of the day is 100 - 1
    assert m["volume_24h"] == pytest.approx(sum(10.0 + i for i in range(30)))
    p = overview.portfolio_summary(f.state)
    assert p["equity"] == 9_900.0 and p["pnl_today"] == pytest.approx(-100.0)
    assert p["exposure"] == pytest.approx(10.0 * 130.0) and p["exposure_fraction"] == pytest.approx(
        1300 / 9900
    )
    assert overview.recent_alerts(f.state)[0]["event"] == "refused"
    j.close()


def test_overview_page(tmp_path: Path):
    s = _settings(tmp_path)
    j = _journal(s.data_dir)
    w = overview.page(s, start=False)
    panel = w.panel
    assert "s1" in panel.sessions.value and "ACTIVE" in panel.sessions.value
    assert "130.0000" in panel._rows[SYM].value and "31.31%" in panel._rows[SYM].value
    assert "9,900.00 USDT" in panel.summary.value
    assert "max_order_notional" in panel.alerts.value
    # the kill switch by command writes only a risk event (its state after the event), no state row
    j.record_risk(
        T0 + 10 * MIN, "halt", "kill switch (dashboard)", state="HALTED", previous="ACTIVE", limit=None
    )
    panel.loop.tick()
    assert "HALTED" in panel.sessions.value
    j.record_risk(
        T0 + 11 * MIN, "resume", "cleared by a person", state="ACTIVE", previous="HALTED", limit=None
    )
    panel.loop.tick()
    assert "HALTED" not in panel.sessions.value and "ACTIVE" in panel.sessions.value
    assert panel.loop.heartbeat in w.children
    j.close()


def test_overview_watches_symbols_from_the_store(tmp_path: Path):
    from workbench.data.store import Store

    s = _settings(tmp_path)
    c = pd.DataFrame(
        [[T0 + i * 3_600_000, *_candle(i, 200.0 + i)[1:]] for i in range(48)],
        columns=["ts", "open", "high", "low", "close", "volume"],
    )
    st = Store(s.data_dir)
    st.write(st.key("candles", "binance", "ETH/USDT", "1h"), c)
    p = overview.page(s, watch=["ETH/USDT", "XRP/USDT"], start=False).panel
    m = overview.store_summary(s.data_dir, "binance", "ETH/USDT", "1h")
    assert m["last"] == 247.0 and m["change_24h"] == pytest.approx(247.0 / (224.0 - 1) - 1)
    assert "ETH/USDT" in p._rows and "247.0000" in p._rows["ETH/USDT"].value
    assert "no candles stored for binance XRP/USDT" in p._rows["XRP/USDT"].value


def test_pages_without_a_session_show_an_empty_state(tmp_path: Path):
    s = _settings(tmp_path)
    for mod in (overview, trading, portfolio, risk):
        w = mod.page(s, start=False)
        text = " ".join(getattr(c, "value", "") for c in _walk(w))
        assert "no session" in text, mod.__name__
    w = settings.page(s, start=False)
    assert "no session" in " ".join(getattr(c, "value", "") for c in _walk(w))


def _walk(w):
    yield w
    for c in getattr(w, "children", ()):
        yield from _walk(c)


# ------------------------------------------------------------------------------------- trading


def test_book_ladder_and_order_validation():
    ladder = trading.book_ladder({"bids": [[99, 1], [100, 2]], "asks": [[102, 1], [101, 3]]})
    assert ladder == [("ask", 102, 1), ("ask", 101, 3), ("bid", 100, 2), ("bid", 99, 1)]
    assert trading.book_ladder(None) == []
    r = trading.validate_order(SYM, "buy", "market", 2.0, None, 100.0, confirm_above=1_000)
    assert r.args == {"symbol": SYM, "side": "buy", "amount": 2.0, "type": "market", "price": None}
    assert r.notional == 200.0 and not r.needs_confirmation
    assert trading.validate_order(SYM, "sell", "limit", 20.0, 101.0, 100.0).needs_confirmation
    for args, msg in [
        ((SYM, "buy", "market", 0.0, None, 100.0), "amount"),
        ((SYM, "buy", "limit", 1.0, None, 100.0), "limit price"),
        ((SYM, "buy", "market", 1.0, None, None), "no last price"),
        ((None, "buy", "market", 1.0, None, 100.0), "symbol"),
        ((SYM, "hold", "market", 1.0, None, 100.0), "side"),
    ]:
        with pytest.raises(ValueError, match=msg):
            trading.validate_order(*args)
    with pytest.raises(ValueError, match="stop must be below"):
        trading.validate_order(SYM, "buy", "market", 1.0, None, 100.0, stop=101.0)
    with pytest.raises(ValueError, match="take-profit: a buy's target must be above"):
        trading.validate_order(SYM, "buy", "market", 1.0, None, 100.0, take_profit=99.0)
    with pytest.raises(ValueError, match="only a buy carries them"):  # spot long only: nothing to protect
        trading.validate_order(SYM, "sell", "market", 1.0, None, 100.0, stop=105.0)
    # a buy's levels go with the engine's order command (never dropped)
    r = trading.validate_order(SYM, "buy", "limit", 1.0, 99.0, 100.0, stop=95.0, take_profit=110.0)
    assert r.args == {"symbol": SYM, "side": "buy", "amount": 1.0, "type": "limit", "price": 99.0, "stop": 95.0,
                      "take_profit": 110.0}  # fmt: skip
    r = trading.validate_order(SYM, "buy", "market", 1.0, None, 100.0, stop=95.0)
    assert r.args["stop"] == 95.0 and "take_profit" not in r.args


def test_the_dashboards_load_no_exchange_client(tmp_path: Path):
    """Every page module, and the session helpers they call (running or not, the session list), import no ccxt
    and not the engine's module (a fresh interpreter: what a dashboard kernel loads)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from workbench.panels import common, overview, portfolio, risk, settings, trading\n"
        f"common.session_running({str(tmp_path)!r}, 'x'); common.list_sessions({str(tmp_path)!r})\n"
        "from workbench.trading.session import SessionLock, session_running\n"
        "bad = sorted(m for m in sys.modules if m in ('ccxt', 'workbench.trading.engine', 'workbench.trading.feeds'))\n"
        "print(bad)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]", p.stdout
    # the old names stay importable from the engine's module, the same objects
    from workbench.trading import engine, session

    assert engine.SessionLock is session.SessionLock and engine.EngineError is session.EngineError
    assert engine.session_status is session.session_status


def test_session_state_shows_the_active_brackets(tmp_path: Path):
    """The engine's ``bracket`` rows (a real journal): the page sees a manual position's active levels only."""
    j = Journal(journal_path(tmp_path, "br"))
    try:
        j.append("bracket", {"symbol": SYM, "status": "pending", "stop": 95.0, "take_profit": 110.0}, key=SYM)
        st = SessionState("br")
        st.apply(j.read())
        assert st.brackets[SYM]["stop"] == 95.0 and st.brackets[SYM]["status"] == "pending"
        j.append("bracket", {"symbol": SYM, "status": "armed", "stop": 95.0, "take_profit": 110.0}, key=SYM)
        st.apply(j.read(after_seq=st.seq))
        assert st.brackets[SYM]["status"] == "armed"
        j.append("bracket", {"symbol": SYM, "status": "triggered", "reason": "stop_loss"}, key=SYM)
        st.apply(j.read(after_seq=st.seq))
        assert st.brackets == {}
    finally:
        j.close()


def test_trading_page_shows_the_journal(tmp_path: Path):
    s = _settings(tmp_path)
    j = _journal(s.data_dir)
    w = trading.page(s, start=False)
    p = w.panel
    assert p.symbol.value == SYM
    assert "129.9000" in p.ladder.value and "130.1000" in p.ladder.value
    assert [b.client_order_id for b in _walk(p.open_orders) if hasattr(b, "client_order_id")] == ["l-1"]
    assert [b.symbol for b in _walk(p.positions) if hasattr(b, "symbol")] == [SYM]
    assert "t1" not in p.history.value and "m-1" in p.history.value
    assert p.chart.data[0].x is None or len(p.chart.data[0].x) == 0  # no view yet: nothing pushed
    p.chart._view_count = 1
    p.indicators.value = ("SMA 20",)
    assert len(p.chart.data[0].x) == 30
    sma = p.chart.data[1 + list(trading.INDICATORS).index("SMA 20")]
    assert sma.visible is True and len(sma.y) == 30
    j.record_candle(SYM, "1m", _candle(30, 131.0))
    p.loop.tick()
    assert len(p.chart.data[0].x) == 31 and p.chart.data[0].close[-1] == 131.0
    assert "ACTIVE" in p.state_line.value
    cancel = next(b for b in _walk(p.open_orders) if hasattr(b, "client_order_id"))
    j.record_price(T0 + 31 * MIN, SYM, 140.0)
    j.record_risk(T0 + 31 * MIN, "halt", "kill switch", state="HALTED", previous="ACTIVE", limit=None)
    p.loop.tick()
    assert "HALTED" in p.state_line.value and "140.0000" in p.state_line.value
    assert (
        next(b for b in _walk(p.open_orders) if hasattr(b, "client_order_id")) is cancel
    )  # kept, not remade
    assert "unrealised 300.00 USDT" in p.positions.children[0].children[0].value
    j.record_order(Order("l-1", SYM, Side.BUY, OrderType.LIMIT, 1.0, price=120.0, status=OrderStatus.CANCELED,
                         created_ms=T0 + MIN, updated_ms=T0 + 32 * MIN, tag="strategy"))  # fmt: skip
    p.loop.tick()
    assert "no open orders" in p.open_orders.children[0].value and cancel.comm is None  # closed
    j.close()


class _Engine(threading.Thread):
    """The engine's side of the command table: answers each command through the journal, refusing orders
    above a notional the way the risk manager words it."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.j = Journal(path)
        self.stop = threading.Event()
        self.seen: list[dict] = []

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            for row in self.j.pending_commands(seq):
                seq = row.seq
                self.seen.append(row.data)
                name, args = row.data["name"], row.data["args"]
                if name == "order" and args["amount"] * 130.0 > 10_000:
                    self.j.ack(
                        row.key, False, "order m-x: DENIED (max_order_notional: 13,000 > limit 10,000)"
                    )
                else:
                    self.j.ack(row.key, True, f"{name} done")
            time.sleep(0.01)
        self.j.close()


def test_order_form_sends_through_the_journal_and_shows_the_refusal(tmp_path: Path):
    s = _settings(tmp_path)
    j = _journal(s.data_dir)
    p = trading.page(s, start=False, confirm_above=1_000).panel
    # not running: refused in words, nothing sent
    p.amount.value = 1.0
    p.submit()
    assert "not running" in p.result.value and not j.pending_commands()
    lock = SessionLock(s.data_dir / "trading" / "locks" / "session-s1.lock", "session s1")
    lock.acquire()
    eng = _Engine(j.path)
    eng.start()
    try:
        p.submit()  # 130 USDT: below the threshold, sent at once
        assert "ok: order done" in p.result.value
        assert eng.seen[-1]["args"] == {
            "symbol": SYM,
            "side": "buy",
            "amount": 1.0,
            "type": "market",
            "price": None,
        }
        assert eng.seen[-1]["source"] == "dashboard"
        p.amount.value = 100.0
        p.submit()  # 13,000 USDT: asks first
        assert len(eng.seen) == 1 and "send?" in p.place.text.value
        p.place.confirm()
        assert (
            "refused" in p.result.value and "max_order_notional: 13,000 &gt; limit 10,000" in p.result.value
        )
        kill = p.controls[3]
        kill.button.click()
        assert len(eng.seen) == 2 and kill.bar.children  # the question, not the command
        kill.yes.click()
        assert eng.seen[-1]["name"] == "halt" and eng.seen[-1]["args"]["flatten"] is True
        cancel = next(b for b in _walk(p.open_orders) if hasattr(b, "client_order_id"))
        cancel.click()
        assert eng.seen[-1] == {**eng.seen[-1], "name": "cancel", "args": {"client_order_id": "l-1"}}
    finally:
        eng.stop.set()
        eng.join()
        lock.release()
        j.close()


# ----------------------------------------------------------------------------------- portfolio


def test_pnl_by_symbol_and_tag_matches_the_portfolio(tmp_path: Path):
    j = _journal(tmp_path)
    sell = Order("s-1", SYM, Side.SELL, OrderType.MARKET, 4.0, status=OrderStatus.FILLED, filled=4.0,
                 avg_price=120.0, created_ms=T0 + MIN, updated_ms=T0 + MIN, tag="strategy")  # fmt: skip
    j.record_fill(Fill("s-1", SYM, Side.BUY, 4.0, 100.0, 0.4, "USDT", T0 + MIN, "t2", tag="strategy"), sell)
    f = JournalFollower(tmp_path, "s1")
    f.poll()
    rows = portfolio.pnl_by(f.state)
    pf = Portfolio.from_fills("USDT", {"USDT": 10_000.0}, j.fills())
    (tot,) = rows["symbol"]
    assert tot["amount"] == pytest.approx(14.0) and tot["fees"] == pytest.approx(1.5)
    assert tot["unrealized"] == pytest.approx(pf.unrealized_pnl({SYM: 130.0}))
    by_tag = {r["tag"]: r for r in rows["tag"]}
    assert set(by_tag) == {"manual", "strategy"}
    assert by_tag["manual"]["unrealized"] == pytest.approx((130 - 110) * 10)
    j.close()


def test_portfolio_page(tmp_path: Path):
    s = _settings(tmp_path)
    j = _journal(s.data_dir)
    p = portfolio.page(s, start=False).panel
    assert "9,900.00 USDT" in p.summary.value and "1.10 USDT" in p.summary.value
    assert "manual" in p.by_tag.value
    p.chart._view_count = 1
    p.loop.tick(force=True)
    assert list(p.chart.data[0].y) == [10_000.0, 10_200.0, 9_900.0]
    assert p.chart.data[1].y[-1] == pytest.approx(9_900 / 10_200 - 1)
    j.close()


# ---------------------------------------------------------------------------------------- risk


def test_limit_usage_from_the_journal(tmp_path: Path):
    s = _settings(tmp_path, max_open_orders=4, stale_feed_s=100)
    j = _journal(s.data_dir)
    f = JournalFollower(s.data_dir, "s1")
    f.poll()
    rows = {r["label"]: r for r in risk.limit_usage(f.state, s.trading.risk, T0 + 40 * MIN)}
    assert rows["drawdown"]["fraction"] == pytest.approx((300 / 10_200) / 0.2)
    assert rows["open orders"]["text"] == "1 of 4" and rows["open orders"]["fraction"] == 0.25
    assert rows["gross exposure"]["value"] == pytest.approx(1300 / 9900)
    assert rows["feed age"]["value"] == pytest.approx(600.0) and rows["feed age"]["fraction"] > 1
    assert rows["orders per minute"]["value"] == 0
    assert [e["client_order_id"] for e in risk.refusals(f.state)] == ["m-2"]
    j.close()


def test_risk_page_shows_state_and_refusals(tmp_path: Path):
    s = _settings(tmp_path)
    j = _journal(s.data_dir)
    p = risk.page(s, start=False).panel
    assert "ACTIVE" in p.state_box.value and "max_order_notional" in p.refused.value
    j.record_risk(T0 + 9 * MIN, "halt", "kill switch", state="HALTED", previous="ACTIVE", limit=None)
    p.chart._view_count = 1
    p.loop.tick()
    assert "HALTED" in p.state_box.value
    assert "drawdown" in list(p.chart.data[0].y)
    j.close()


# ------------------------------------------------------------------------------------ settings


def test_settings_page_masks_secrets_and_shows_feeds(tmp_path: Path, monkeypatch):
    s = _settings(tmp_path)
    j = _journal(s.data_dir)
    cfg = settings.masked_config(s)
    assert cfg["trading"]["risk"]["max_drawdown"] == s.trading.risk.max_drawdown
    from workbench.secrets import redact_data

    assert redact_data({"exchanges": {"x": {"apiKey": "abc123", "secret": "s3cr3t"}}}) == {
        "exchanges": {"x": {"apiKey": "***", "secret": "***"}}
    }
    w = settings.page(s, start=False)
    p = w.panel
    assert '"max_drawdown"' in p.config.value
    assert "max_open_orders" in p.limits.value
    assert SYM in p.feeds.value and "ok" in p.feeds.value
    j.record_risk(T0 + 31 * MIN, "stale_feed", f"{SYM}: no update for 61.0 s")
    p.loop.tick()
    assert "STALE" in p.feeds.value
    st = settings.feed_status(p.loop.followers["s1"].state, T0 + 40 * MIN)
    assert st[0]["stale"] and st[0]["age_s"] == pytest.approx(600.0)
    j.close()


def test_a_command_that_fails_to_send_is_a_refusal_in_words():
    async def broken():
        raise OSError("disk full")

    got: list[dict] = []
    common.run_soon(broken(), got.append)

    async def in_a_loop():
        common.run_soon(broken(), got.append)
        while len(got) < 2:
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(in_a_loop(), timeout=30))
    assert [g["message"] for g in got] == ["not sent: OSError: disk full"] * 2
    assert not any(g["ok"] for g in got)


# ------------------------------------------------------------------ against a real engine and replay exchange


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    from workbench.data.sample import load_sample
    from workbench.data.store import Store

    data = tmp_path_factory.mktemp("panel-home") / "data"
    load_sample(Store(data), Path(__file__).resolve().parents[1] / "data" / "sample", kinds=("candles",))
    return data


@pytest.fixture
def replay(home: Path):
    from test_trading_session import START

    from workbench.data.store import Store
    from workbench.replay import ReplayExchange

    x = ReplayExchange(Store(home), [SYM], "5m", start=START, speed=0, balances={"USDT": 10_000.0})
    with x.run_in_thread():
        yield x


@pytest.mark.slow
def test_trading_page_against_a_real_session(home: Path, replay, tmp_path: Path):
    """`workbench trade run` (a real process) on the replay exchange: the page's order form fills through the
    engine, a fat order shows the risk manager's reason, and the kill switch shows HALTED and flattens."""
    from test_trading_session import Session, step
    from test_trading_session import write_config as session_config

    cfg = session_config(tmp_path / "config", replay, home, max_order_notional=50_000)
    args = ["--strategy", "sma_cross", "-e", "binance", "-s", SYM, "-t", "5m", "--mode", "paper",
            "-p", "fast=3", "-p", "slow=8", "--size", "0.1"]  # fmt: skip
    s = Session(cfg, home, "panel", *args)
    try:
        s.running()
        step(replay, s, 2)
        p = trading.page(load_settings(cfg, env={}), session="panel", start=False, confirm_above=1e9).panel
        assert p.session == "panel" and p.symbol.value == SYM
        p.amount.value = 0.001
        p.submit()
        assert "ok: order" in p.result.value and "FILLED" in p.result.value, p.result.value
        p.loop.tick()
        assert "manual" in p.history.value
        assert [b.symbol for b in _walk(p.positions) if hasattr(b, "symbol")] == [SYM]
        p.amount.value = 100.0  # about 6 million USDT
        p.submit()
        assert "refused" in p.result.value and "max_order_notional" in p.result.value, p.result.value
        p.controls[3].button.click()
        p.controls[3].yes.click()
        assert "HALTED" in p.result.value, p.result.value
        s.wait(
            lambda j: (
                not Journal.export(j)["positions"] or abs(sum(Journal.export(j)["positions"].values())) < 1e-4
            )
        )
        p.loop.tick()
        assert "HALTED" in p.state_line.value
    finally:
        s.stop()


def test_trading_chart_starts_from_the_stores_history(tmp_path: Path):
    """The engine journals only the candles that close while it runs: the chart puts the store's candles before
    the first of them (never the store's later ones: a replay's store holds the future)."""
    from workbench.data.store import Store

    s = _settings(tmp_path)
    rows = [[T0 + (i - 10) * MIN, *_candle(i, 50.0 + i)[1:]] for i in range(40)]  # 10 before T0, 30 after
    st = Store(s.data_dir)
    st.write(
        st.key("candles", "binance", SYM, "1m"),
        pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"]),
    )
    j = _journal(s.data_dir, n=5)
    j.meta_set(
        "spec", {"name": "s1", "symbols": [SYM], "timeframe": "1m", "mode": "paper", "exchange": "binance"}
    )
    p = trading.page(s, start=False).panel
    p.chart._view_count = 1
    p.loop.tick(force=True)
    x = pd.DatetimeIndex(p.chart.data[0].x)
    assert len(x) == 15 and x[0] == pd.Timestamp(T0 - 10 * MIN, unit="ms")
    assert list(p.chart.data[0].close[-5:]) == [100.0 + i for i in range(5)]  # the journal's own
    h = trading.history_candles(s.data_dir, "binance", SYM, "1m", T0, bars=3)
    assert list(h["close"]) == [57.0, 58.0, 59.0]
    assert trading.history_candles(s.data_dir, "binance", "XRP/USDT", "1m", T0).empty
    j.close()


def test_figures_share_plotly_bundle_when_served(monkeypatch) -> None:
    """Served by ``workbench dashboards`` (the variable set), a figure's ``_esm`` is a short shim importing the
    bundle from the server; elsewhere it is plotly's own FigureWidget with its 5 MB bundle inline."""
    import plotly.graph_objects as go

    from workbench import services
    from workbench.panels import common

    assert common.PLOTLY_ESM_ENV == services.PLOTLY_ESM_ENV
    monkeypatch.delenv(common.PLOTLY_ESM_ENV, raising=False)
    plain = common.figure_widget(go.Figure(go.Scatter(y=[1, 2, 3])))
    assert isinstance(plain, go.FigureWidget) and len(plain._esm) > 1_000_000
    path = "voila/labextensions/workbench-assets/static/plotly-widget-x.js"
    monkeypatch.setenv(common.PLOTLY_ESM_ENV, path)
    a, b = (common.figure_widget(go.Figure(go.Scatter(y=[1, 2, 3]))) for _ in range(2))
    shared = common._SHARED_FIGURE
    assert (
        shared is not None and all(isinstance(f, shared) for f in (a, b)) and isinstance(a, go.FigureWidget)
    )
    assert len(a._esm) < 1_000 and f'"{path}"' in a._esm and "export default" in a._esm
    assert list(a.data[0].y) == [1, 2, 3]
    a.data[0].y = [4, 5]  # still a live FigureWidget
    assert list(a.data[0].y) == [4, 5]


def test_figure_widgets_send_times_as_dates_not_nanoseconds() -> None:
    """plotly's widget serialiser turns a ``datetime64[ns]`` array into integers (the browser then drew a date
    axis in nanoseconds, 1.7e18); the panels' figures and live figures send dates."""
    import datetime as dt

    import plotly.graph_objects as go
    from plotly.serializers import _py_to_js

    from workbench.panels.common import figure_widget
    from workbench.viz.live import candles_figure

    idx = pd.date_range("2024-03-04", periods=3, freq="5min", tz="UTC").as_unit("ns")  # as the store reads
    raw = go.Figure(go.Scatter(x=idx.tz_localize(None).to_numpy(), y=[1, 2, 3]))
    assert isinstance(_py_to_js(raw.data[0].x, None)[0], int)  # the defect, in plotly itself
    w = figure_widget(raw)
    assert _py_to_js(w.data[0].x, None)[0] == dt.datetime(2024, 3, 4)
    c = pd.DataFrame({k: [1.0, 2.0, 3.0] for k in ("open", "high", "low", "close", "volume")}, index=idx)
    live = candles_figure(c, {})
    assert all(_py_to_js(tr.x, None)[0] == dt.datetime(2024, 3, 4) for tr in live.data)


def test_a_positions_protective_levels_are_shown_in_words() -> None:
    assert trading.bracket_text(None) == ""
    assert trading.bracket_text({"stop": 61000.0, "take_profit": 66000.0, "status": "armed"}) == (
        ", stop 61,000.00 / take-profit 66,000.00 (armed)"
    )
    assert (
        trading.bracket_text({"stop": 0.5, "take_profit": None, "status": "pending"})
        == ", stop 0.500000 (pending)"
    )
