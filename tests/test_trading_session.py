"""Trading sessions end to end: ``workbench trade run`` (a real process) against the replay exchange through the
real ccxt.pro client, stepped one bar at a time, checked against ``workbench backtest`` (parity), plus the
command channel (status, pause, halt, resume --clear-halt, manual orders) and one session per name."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from live_session import flatten_children, write_flat

from workbench.backtest.engine import BacktestConfig, run_backtest
from workbench.data.sample import load_sample
from workbench.data.store import Store
from workbench.replay import ReplayExchange
from workbench.strategies import get_strategy
from workbench.trading.journal import Journal, JournalError, journal_path
from workbench.trading.reconcile import compare

ROOT = Path(__file__).resolve().parents[1]
WB = [sys.executable, "-m", "workbench.cli"]
START = "2024-03-04"
TF_MS = 300_000
FEE, SLIP_BPS = 0.001, 5.0


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("trade-home") / "data"
    load_sample(Store(data), ROOT / "data" / "sample", kinds=("candles",))
    return data


@pytest.fixture
def replay(home):
    x = ReplayExchange(Store(home), ["BTC/USDT"], "5m", start=START, speed=0, balances={"USDT": 10_000.0})
    with x.run_in_thread():
        yield x


def write_config(folder: Path, replay: ReplayExchange, home: Path, **risk) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wb = {"paths": {"data": str(home)}, "exchanges": {"binance": {"ccxt": replay.ccxt_config(keys=False)}}}
    limits = {
        "max_order_notional": 1_000_000,
        "max_position_fraction": 1.0,
        "max_gross_exposure": 1.0,
        "max_drawdown": 0.9,
        "daily_loss_limit": 0.9,
        "stale_feed_s": None,
        **risk,
    }
    trading = {
        "mode": "paper",
        "initial_cash": 10_000,
        "fees": {"maker": FEE, "taker": FEE},
        "slippage_bps": SLIP_BPS,
        "risk": limits,
    }
    (folder / "workbench.yml").write_text(yaml.safe_dump(wb))
    (folder / "trading.yml").write_text(yaml.safe_dump(trading))
    return folder


def env() -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    e.pop("WORKBENCH_HOME", None)
    e.pop("WORKBENCH_CONFIG", None)
    return e


def cli(
    cfg: Path, *args: str, check: bool = True, timeout: float = 120, env_extra: dict | None = None
) -> subprocess.CompletedProcess:
    p = subprocess.run([*WB, "--config", str(cfg), *args], capture_output=True, text=True,
                       env={**env(), **(env_extra or {})}, cwd=ROOT, timeout=timeout)  # fmt: skip
    if check and p.returncode != 0:
        raise AssertionError(f"{args} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


class Session:
    """A ``workbench trade run`` process and its journal."""

    def __init__(self, cfg: Path, home: Path, name: str, *args: str) -> None:
        self.cfg, self.home, self.name = cfg, home, name
        path = journal_path(home, name)
        self.mark = 0  # the journal's last seq before this process: its own RUNNING comes after
        if path.exists():
            with Journal(path, readonly=True) as j:
                self.mark = j.last_seq()
        cmd = [*WB, "--config", str(cfg), "trade", "run", "--session", name, *args]
        self.log = open(home.parent / f"{name}.log", "w")  # noqa: SIM115
        self.p = subprocess.Popen(
            cmd, cwd=ROOT, env=env(), stdout=self.log, stderr=subprocess.STDOUT, text=True
        )

    def text(self) -> str:
        return (self.home.parent / f"{self.name}.log").read_text()

    def journal(self) -> Journal:
        return Journal(journal_path(self.home, self.name), readonly=True)

    def wait(self, what, timeout: float = 90, step: float = 0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f"trade run ended ({self.p.returncode}):\n{self.text()}")
            if journal_path(self.home, self.name).exists():
                try:
                    j = self.journal()
                except JournalError:  # the engine is creating it
                    time.sleep(step)
                    continue
                try:
                    got = what(j)
                finally:
                    j.close()
                if got:
                    return got
            time.sleep(step)
        raise AssertionError(f"timed out waiting; log:\n{self.text()}")

    def running(self) -> None:
        """Wait until this process journalled RUNNING (a restarted session's journal has an earlier one)."""
        mark = self.mark
        self.wait(
            lambda j: any(r.data.get("state") == "RUNNING" for r in j.read(after_seq=mark, kinds="state"))
        )

    def decided(self, bar_ms: int) -> None:
        self.wait(lambda j: (j.meta_get("decided") or {}).get("bar", 0) >= bar_ms)

    def stop(self) -> None:
        if self.p.poll() is None:
            cli(self.cfg, "trade", "stop", "--session", self.name)
            self.p.wait(60)
        self.log.close()


def step(replay: ReplayExchange, session: Session, bars: int) -> None:
    """Advance the replay one bar at a time, each time waiting until the engine decided on the bar just closed."""
    for _ in range(bars):
        t = replay.advance(TF_MS)
        session.decided(t - TF_MS)


@pytest.mark.parametrize("stops", [{}, {"sl": 0.004, "tp": 0.006}], ids=["no-stops", "stops"])
def test_paper_session_equals_the_backtest(home, replay, tmp_path, stops) -> None:
    """Parity: the same strategy and size over the same bars as a backtest and as a paper session against the
    replay exchange gives the same trades (times and sides exactly, amounts up to the lot size) and equity
    within 1e-4 relative; with stops too (the session applies the backtest's stop rules)."""
    cfg = write_config(tmp_path / "config", replay, home)
    params = ["-p", "fast=3", "-p", "slow=8"]
    for k, v in stops.items():
        params += [f"--{k}", str(v)]
    name = "parity-stops" if stops else "parity"
    s = Session(cfg, home, name, "--strategy", "sma_cross", "-e", "binance", "-s", "BTC/USDT", "-t", "5m",
                "--mode", "paper", *params)  # fmt: skip
    try:
        s.running()
        start_ms = replay.now_ms()
        s.decided(start_ms - TF_MS)
        step(replay, s, 80)
        end_ms = replay.now_ms()
    finally:
        s.stop()
    out = s.text()
    assert "mode PAPER" in out and "127.0.0.1" in out  # the banner: mode and the effective URLs
    j = s.journal()
    export = j.export()
    markets = j.meta_get("markets")
    j.close()
    candles = Store(home).candles("binance", "BTC/USDT", "5m")
    candles = candles[candles.index < pd.Timestamp(end_ms + TF_MS, unit="ms", tz="UTC")]
    bt = run_backtest(
        candles,
        get_strategy("sma_cross")(fast=3, slow=8),
        BacktestConfig(
            fees=FEE, slippage=SLIP_BPS / 10_000, sl_stop=stops.get("sl"), tp_stop=stops.get("tp")
        ),
        start=pd.Timestamp(start_ms, unit="ms", tz="UTC"),
    )
    report = compare(
        bt.to_dict(), export, lot_steps=markets, start_ms=start_ms, end_ms=end_ms, timeframe_ms=TF_MS
    )
    assert report["ok"], report["summary"] + "\n" + "\n".join(map(str, report["rows"]))
    assert len(report["rows"]) >= 6, "the strategy traded"
    if stops:
        reasons = {f["reason"] for f in bt.fills()}
        assert {"stop_loss", "take_profit"} & reasons, (
            "the stops fired in the backtest (and so in the session)"
        )
    assert report["equity_rel_diff"] is not None and report["equity_rel_diff"] <= 1e-4
    # the CLI gives the same verdict, table and all
    (tmp_path / "bt.json").write_text(json.dumps(bt.to_dict(), default=str))
    p = cli(cfg, "reconcile", "--backtest", str(tmp_path / "bt.json"), "--session", name)
    assert "OK" in p.stdout
    # journal export has the documented shape
    p = cli(cfg, "journal", "export", "--session", name, "--out", str(tmp_path / "j.json"))
    d = json.loads((tmp_path / "j.json").read_text())
    assert set(d) >= {"orders", "fills", "risk_events", "equity", "positions"}
    o = d["orders"][0]
    assert {"client_order_id", "exchange_order_id", "symbol", "side", "type", "amount", "status"} <= set(o)
    f = d["fills"][0]
    assert {
        "timestamp",
        "client_order_id",
        "symbol",
        "side",
        "amount",
        "price",
        "fee",
        "fee_currency",
    } <= set(f)


def test_commands_status_halt_and_one_session_per_name(home, replay, tmp_path) -> None:
    cfg = write_config(tmp_path / "config", replay, home)
    args = ["--strategy", "sma_cross", "-e", "binance", "-s", "BTC/USDT", "-t", "5m", "--mode", "paper",
            "-p", "fast=3", "-p", "slow=8", "--size", "0.5"]  # fmt: skip
    s = Session(cfg, home, "cmds", *args)
    try:
        s.running()
        step(replay, s, 3)
        # a second session of the same name is refused while the first runs
        p = cli(cfg, "trade", "run", "--session", "cmds", *args, check=False, timeout=60)
        assert p.returncode == 1 and "already running" in p.stderr
        st = json.loads(cli(cfg, "trade", "status", "--session", "cmds", "--json").stdout)
        assert st["running"] and st["risk_state"] == "ACTIVE" and st["mode"] == "paper"
        # a manual order goes through the risk manager: a fat order is refused with the limit's reason
        p = cli(cfg, "trade", "order", "--session", "cmds", "-s", "BTC/USDT", "--side", "buy", "--amount", "100",
                check=False)  # fmt: skip
        assert p.returncode == 1 and "refused" in p.stderr
        p = cli(
            cfg, "trade", "order", "--session", "cmds", "-s", "BTC/USDT", "--side", "buy", "--amount", "0.001"
        )
        assert "FILLED" in p.stdout
        # the kill switch: HALTED, flattened, and a resume without --clear-halt is refused
        p = cli(cfg, "trade", "halt", "--session", "cmds", "--flatten")
        assert "HALTED" in p.stdout
        st = json.loads(cli(cfg, "trade", "status", "--session", "cmds", "--json").stdout)
        assert st["risk_state"] == "HALTED"
        assert abs(sum(st["positions"].values())) < 1e-4
        p = cli(cfg, "trade", "resume", "--session", "cmds", check=False)
        assert p.returncode == 1 and "clear-halt" in p.stderr
    finally:
        s.stop()
    # HALTED holds across a restart until a person clears it
    s2 = Session(cfg, home, "cmds", *args)
    try:
        s2.running()
        st = json.loads(cli(cfg, "trade", "status", "--session", "cmds", "--json").stdout)
        assert st["risk_state"] == "HALTED"
        cli(cfg, "trade", "resume", "--session", "cmds", "--clear-halt")
        st = json.loads(cli(cfg, "trade", "status", "--session", "cmds", "--json").stdout)
        assert st["risk_state"] == "ACTIVE"
    finally:
        s2.stop()
    j = Journal(journal_path(home, "cmds"), readonly=True)
    events = [r.data.get("event") for r in j.read(kinds="risk")]
    j.close()
    assert "refused" in events and "halt" in events


def test_short_strategies_are_refused_on_spot(home, replay, tmp_path) -> None:
    cfg = write_config(tmp_path / "config", replay, home)
    p = cli(cfg, "trade", "run", "--strategy", "sma_cross", "-e", "binance", "-s", "BTC/USDT", "-t", "5m",
            "--mode", "paper", "--direction", "both", check=False)  # fmt: skip
    assert p.returncode == 1 and "spot market" in p.stderr and "long only" in p.stderr
    p = cli(cfg, "trade", "run", "--strategy", "sma_cross", "-e", "binance", "-s", "BTC/USDT", "-t", "5m",
            "--mode", "live", "--yes", check=False)  # fmt: skip
    assert p.returncode == 1 and "live mode needs binance credentials" in p.stderr, p.stderr
    # live never comes from config alone
    p = cli(cfg, "trade", "run", "--strategy", "sma_cross", "-e", "binance", "-s", "BTC/USDT", "-t", "5m", "--yes",
            check=False, env_extra={"WORKBENCH__TRADING__MODE": "live"})  # fmt: skip
    assert p.returncode == 1 and "--mode live on the command line" in p.stderr, p.stderr


def test_a_stale_feed_reduces_and_fresh_prices_restore(home, replay, tmp_path) -> None:
    cfg = write_config(tmp_path / "config", replay, home, stale_feed_s=1.5)
    s = Session(cfg, home, "stale", "--strategy", "sma_cross", "-e", "binance", "-s", "BTC/USDT", "-t", "5m",
                "--mode", "paper", "-p", "fast=3", "-p", "slow=8")  # fmt: skip
    try:
        s.running()
        step(replay, s, 2)

        def risk_events(j: Journal) -> list[str]:
            return [r.data.get("event") for r in j.read(kinds="risk")]

        # the replay clock stands still: no update for 1.5 s of the exchange's clock -> REDUCING, journalled
        s.wait(lambda j: "reduce" in risk_events(j) or "stale_feed" in risk_events(j), timeout=30)
        st = json.loads(cli(cfg, "trade", "status", "--session", "stale", "--json").stdout)
        assert st["risk_state"] == "REDUCING"
        step(replay, s, 1)
        # fresh prices: back to ACTIVE by itself (and REDUCING again once the stepped replay is quiet again)
        s.wait(lambda j: "resume" in risk_events(j), timeout=30)
        j = s.journal()
        states = [r.data for r in j.read(kinds="risk") if r.data.get("event") in ("reduce", "resume")]
        j.close()
        assert [x["event"] for x in states[:2]] == ["reduce", "resume"]
        assert "stale feed" in states[0]["reason"] and "every feed updates again" in states[1]["reason"]
    finally:
        s.stop()


def test_the_kill_switch_splits_a_flatten_that_the_per_order_limit_would_refuse(
    home, replay, tmp_path
) -> None:
    """A position of 3.4 x max_order_notional (built with four manual buys within the limit): ``trade halt
    --flatten`` closes it whole in 4 reduce-only children, each within the limit at the price it was checked at,
    their amounts adding up exactly (in decimal) to the position. (Before: one sell of the whole position, refused
    by max_order_notional, and the position left open by the kill switch.)"""
    from decimal import Decimal

    limit = 1_000.0
    cfg = write_config(tmp_path / "config", replay, home, max_order_notional=limit)
    s = Session(cfg, home, "split", "--strategy", write_flat(tmp_path / "strategies"), "-e", "binance", "-s",
                "BTC/USDT", "-t", "5m", "--mode", "paper")  # fmt: skip
    try:
        s.running()
        step(replay, s, 1)
        st = json.loads(cli(cfg, "trade", "status", "--session", "split", "--json").stdout)
        price = st["prices"]["BTC/USDT"]
        j = s.journal()
        lot = j.meta_get("markets")["BTC/USDT"]["amount_step"]
        j.close()
        places = Decimal(repr(lot))
        each = Decimal(math.floor(0.85 * limit / price / lot)) * places
        for _ in range(4):
            p = cli(cfg, "trade", "order", "--session", "split", "-s", "BTC/USDT", "--side", "buy", "--amount",
                    str(each))  # fmt: skip
            assert "FILLED" in p.stdout
        st = json.loads(cli(cfg, "trade", "status", "--session", "split", "--json").stdout)
        held, price = st["positions"]["BTC/USDT"], st["prices"]["BTC/USDT"]
        assert 3 < held * price / limit <= 3.45
        p = cli(cfg, "trade", "halt", "--session", "split", "--flatten")
        assert "HALTED" in p.stdout and "flattened" in p.stdout
        st = json.loads(cli(cfg, "trade", "status", "--session", "split", "--json").stdout)
        assert st["risk_state"] == "HALTED"
        assert abs(st["positions"]["BTC/USDT"]) < 1e-12
    finally:
        s.stop()
    j = s.journal()
    try:
        halt = next(r for r in j.read(kinds=["command"]) if r.data.get("name") == "halt")
        kids = flatten_children(j, halt.seq)
        fills = {f.client_order_id: f for f in j.fills()}
        refused = [r.data for r in j.read(kinds="risk") if r.data.get("event") == "refused"]
    finally:
        j.close()
    assert len(kids) == 4, kids
    assert all(o.status.value == "FILLED" and o.reduce_only and o.side.value == "sell" for o in kids)
    assert sum(Decimal(repr(o.amount)) for o in kids) == Decimal(repr(held)).quantize(places) == 4 * each
    # each within the limit at the price it was checked at (a paper sell fills at that price less the slippage)
    checked = [o.amount * fills[o.client_order_id].price / (1 - SLIP_BPS / 10_000) for o in kids]
    assert all(n <= limit * (1 + 1e-9) for n in checked), checked
    assert max(o.amount for o in kids) < 1.01 * min(o.amount for o in kids)  # as equal as the lot allows
    assert not refused, refused


class Bars:
    """The recorded candles the replay serves, by bar open time (ms)."""

    def __init__(self, home: Path) -> None:
        c = Store(home).candles("binance", "BTC/USDT", "5m")
        self.ts = [int(t) for t in c.index.as_unit("ms").asi8]
        self.pos = {t: i for i, t in enumerate(self.ts)}
        self.o, self.h, self.l, self.c = (
            c[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close")
        )

    def at(self, ms: int) -> int:
        return self.pos[ms]

    def stop_fits(self, i: int) -> bool:
        """Bar ``i + 1`` reaches below every price seen in bar ``i`` after its open (a stop set in bar ``i`` fires
        in bar ``i + 1``, not before)."""
        return self.l[i + 1] < min(self.o[i], self.c[i], self.o[i + 1]) - 1.0

    def stop_level(self, i: int) -> float:
        """A stop 30% of the way from bar ``i + 1``'s low up to the lowest price bar ``i`` shows after its open."""
        above = min(self.o[i], self.c[i], self.o[i + 1])
        return round(self.l[i + 1] + 0.3 * (above - self.l[i + 1]), 2)


def seek(replay: ReplayExchange, s: Session, bars: Bars, ok) -> int:
    """Step the replay bar by bar until ``ok(i)`` holds for the bar now forming (index ``i``); returns ``i``."""
    for _ in range(300):
        i = bars.at(replay.now_ms())
        if ok(i):
            return i
        step(replay, s, 1)
    raise AssertionError("no bar in the sample fits the scenario")


def bracket(j: Journal, symbol: str = "BTC/USDT") -> dict:
    rows = j.read(kinds=["bracket"])
    return [r.data for r in rows if r.key == symbol][-1]


def manual_sells(j: Journal, reason: str) -> list:
    return [o for o in j.orders().values() if o.side.value == "sell" and o.reason == reason]


def test_a_manual_buy_with_a_stop_and_a_take_profit_is_protected(home, replay, tmp_path) -> None:
    """``trade order --stop/--take-profit``: once the buy fills, a price through the stop sells the manual
    position at market (the backtest's stop rule: at the level when the bar's range reaches it; the paper fill
    with the slippage and the taker fee), the take-profit likewise; a bracket on the wrong side of the price or
    on a sell is refused in the ack and nothing is sent; a close ends the levels."""
    slip = SLIP_BPS / 10_000
    cfg = write_config(tmp_path / "config", replay, home)
    name = "brackets"
    s = Session(cfg, home, name, "--strategy", write_flat(tmp_path / "strategies"), "-e", "binance", "-s",
                "BTC/USDT", "-t", "5m", "--mode", "paper")  # fmt: skip
    bars = Bars(home)
    amount = "0.01"

    def order(*extra: str, check: bool = True) -> subprocess.CompletedProcess:
        return cli(cfg, "trade", "order", "--session", name, "-s", "BTC/USDT", "--side", "buy", "--amount", amount,
                   *extra, check=check)  # fmt: skip

    try:
        s.running()
        step(replay, s, 1)
        # refused brackets: the reason in the ack, no order
        j = s.journal()
        n_orders = len(j.orders())
        j.close()
        last = bars.o[bars.at(replay.now_ms())]
        p = order("--stop", f"{last * 1.01:.2f}", check=False)
        assert p.returncode == 1 and "stop: " in p.stderr and "must be below" in p.stderr, p.stderr
        p = order("--take-profit", f"{last * 0.99:.2f}", check=False)
        assert p.returncode == 1 and "must be above" in p.stderr, p.stderr
        p = cli(cfg, "trade", "order", "--session", name, "-s", "BTC/USDT", "--side", "sell", "--amount", amount,
                "--stop", f"{last * 1.01:.2f}", check=False)  # fmt: skip
        assert p.returncode == 1 and "only a buy carries them" in p.stderr, p.stderr
        j = s.journal()
        assert len(j.orders()) == n_orders and not j.read(kinds=["bracket"])
        j.close()

        # a stop: the bar after the entry's reaches it (the prices seen in the entry's bar stay above)
        i = seek(replay, s, bars, bars.stop_fits)
        stop = bars.stop_level(i)
        p = order("--stop", f"{stop:.2f}", "--take-profit", f"{bars.o[i] * 1.5:.2f}")
        assert "FILLED" in p.stdout and f"stop {stop:g}" in p.stdout, p.stdout
        j = s.journal()
        assert bracket(j)["status"] == "armed" and bracket(j)["stop"] == stop
        j.close()
        # a bracketed buy the risk manager refuses leaves the position's levels as they were
        p = cli(cfg, "trade", "order", "--session", name, "-s", "BTC/USDT", "--side", "buy", "--amount", "100",
                "--stop", f"{stop - 100:.2f}", check=False)  # fmt: skip
        assert p.returncode == 1 and "max_order_notional" in p.stderr, p.stderr
        j = s.journal()
        assert bracket(j)["status"] == "armed" and bracket(j)["stop"] == stop
        j.close()
        step(replay, s, 2)
        j = s.journal()
        try:
            (sell,) = manual_sells(j, "stop_loss")
            (f,) = [f for f in j.fills() if f.client_order_id == sell.client_order_id]
            assert math.isclose(f.price, stop * (1 - slip), rel_tol=1e-12), (f.price, stop)
            assert math.isclose(f.fee, f.amount * f.price * FEE, rel_tol=1e-9)
            assert f.amount == float(amount) and sell.reduce_only
            assert bracket(j)["status"] == "triggered" and bracket(j)["reason"] == "stop_loss"
        finally:
            j.close()
        st = json.loads(cli(cfg, "trade", "status", "--session", name, "--json").stdout)
        assert abs(st["positions"]["BTC/USDT"]) < 1e-12 and st["brackets"] == {}

        # a take-profit
        def tp_fits(i: int) -> bool:
            return bars.h[i + 1] > max(bars.o[i], bars.c[i], bars.o[i + 1]) + 1.0

        i = seek(replay, s, bars, tp_fits)
        below = max(bars.o[i], bars.c[i], bars.o[i + 1])
        tp = round(bars.h[i + 1] - 0.3 * (bars.h[i + 1] - below), 2)
        order("--stop", f"{bars.o[i] * 0.5:.2f}", "--take-profit", f"{tp:.2f}")
        step(replay, s, 2)
        j = s.journal()
        try:
            (sell,) = manual_sells(j, "take_profit")
            (f,) = [f for f in j.fills() if f.client_order_id == sell.client_order_id]
            assert math.isclose(f.price, tp * (1 - slip), rel_tol=1e-12), (f.price, tp)
            assert not manual_sells(j, "stop_loss")[1:]
        finally:
            j.close()

        # a close ends the levels: nothing fires afterwards
        i = seek(replay, s, bars, bars.stop_fits)
        order("--stop", f"{bars.stop_level(i):.2f}")
        assert "ok:" in cli(cfg, "trade", "close", "--session", name, "BTC/USDT").stdout
        step(replay, s, 2)
        j = s.journal()
        try:
            assert bracket(j)["status"] == "canceled" and "close" in bracket(j)["reason"]
            assert len(manual_sells(j, "stop_loss")) == 1
        finally:
            j.close()
    finally:
        s.stop()


def test_manual_stops_survive_a_restart_and_a_gap_fills_at_the_open(home, replay, tmp_path) -> None:
    """The levels are rebuilt from the journal: an engine SIGKILLed after the entry still stops the position
    out after its restart (at the level, the bar's range reaching it); and when the price opened through the
    stop while the engine was down, the stop fills at that open (the backtest's gap rule)."""
    slip = SLIP_BPS / 10_000
    cfg = write_config(tmp_path / "config", replay, home)
    name = "brackets-restart"
    args = ("--strategy", write_flat(tmp_path / "strategies"), "-e", "binance", "-s", "BTC/USDT", "-t", "5m",
            "--mode", "paper")  # fmt: skip
    bars = Bars(home)

    def buy(stop: float) -> None:
        p = cli(cfg, "trade", "order", "--session", name, "-s", "BTC/USDT", "--side", "buy", "--amount", "0.01",
                "--stop", f"{stop:.2f}")  # fmt: skip
        assert "FILLED" in p.stdout, p.stdout

    def kill(sess: Session) -> None:
        sess.p.kill()  # SIGKILL
        sess.p.wait(30)
        sess.log.close()

    s = Session(cfg, home, name, *args)
    try:
        s.running()
        step(replay, s, 1)
        # 1. a restart between the entry and the trigger
        i = seek(replay, s, bars, lambda i: bars.l[i + 1] < min(bars.o[i], bars.c[i], bars.o[i + 1]) - 1.0)
        above = min(bars.o[i], bars.c[i], bars.o[i + 1])
        stop = round(bars.l[i + 1] + 0.3 * (above - bars.l[i + 1]), 2)
        buy(stop)
        kill(s)
        s = Session(cfg, home, name, *args)
        s.running()
        step(replay, s, 2)
        j = s.journal()
        try:
            (sell,) = manual_sells(j, "stop_loss")
            (f,) = [f for f in j.fills() if f.client_order_id == sell.client_order_id]
            assert math.isclose(f.price, stop * (1 - slip), rel_tol=1e-12), (f.price, stop)
        finally:
            j.close()
        # 2. the price opens through the stop while the engine is down: filled at that open
        i = seek(replay, s, bars, lambda i: bars.o[i + 1] < bars.o[i] - 2.0)
        stop = round((bars.o[i] + bars.o[i + 1]) / 2, 2)
        buy(stop)
        kill(s)
        replay.advance(TF_MS)  # bar i closes, bar i + 1 opens below the stop
        s = Session(cfg, home, name, *args)
        s.running()
        # the bracket's row says triggered once the sell was sent and its fill booked
        s.wait(lambda j: len(manual_sells(j, "stop_loss")) == 2 and bracket(j)["status"] == "triggered")
        j = s.journal()
        try:
            gap = [o for o in manual_sells(j, "stop_loss") if o.client_order_id != sell.client_order_id]
            (f,) = [f for f in j.fills() if f.client_order_id == gap[0].client_order_id]
            assert math.isclose(f.price, bars.o[i + 1] * (1 - slip), rel_tol=1e-12), (f.price, bars.o[i + 1])
            assert bracket(j)["status"] == "triggered"
        finally:
            j.close()
    finally:
        if s.p.poll() is None:
            s.stop()


def test_a_manual_stop_larger_than_one_order_sells_in_children(home, replay, tmp_path) -> None:
    """A stop on a manual position of about 2.6 x max_order_notional (three buys within the limit, the last with
    the stop) sells all of it when it fires, in reduce-only children each within the limit (before: one sell of the
    whole position, refused by max_order_notional, and the position left unprotected)."""
    from decimal import Decimal

    limit = 1_000.0
    cfg = write_config(tmp_path / "config", replay, home, max_order_notional=limit)
    name = "bigstop"
    s = Session(cfg, home, name, "--strategy", write_flat(tmp_path / "strategies"), "-e", "binance", "-s",
                "BTC/USDT", "-t", "5m", "--mode", "paper")  # fmt: skip
    bars = Bars(home)
    try:
        s.running()
        step(replay, s, 1)
        j = s.journal()
        lot = j.meta_get("markets")["BTC/USDT"]["amount_step"]
        j.close()
        places = Decimal(repr(lot))

        i = seek(replay, s, bars, bars.stop_fits)
        stop = bars.stop_level(i)
        each = Decimal(math.floor(0.85 * limit / bars.o[i] / lot)) * places
        for k in range(3):
            extra = ["--stop", f"{stop:.2f}"] if k == 2 else []
            p = cli(cfg, "trade", "order", "--session", name, "-s", "BTC/USDT", "--side", "buy", "--amount",
                    str(each), *extra)  # fmt: skip
            assert "FILLED" in p.stdout, p.stdout
        step(replay, s, 2)
        j = s.journal()
        try:
            sells = manual_sells(j, "stop_loss")
            fills = {f.client_order_id: f for f in j.fills()}
            assert bracket(j)["status"] == "triggered"
        finally:
            j.close()
        assert len(sells) == 3, [(o.client_order_id, o.status, o.amount) for o in sells]
        assert all(o.status.value == "FILLED" and o.reduce_only for o in sells)
        assert sum(Decimal(repr(o.amount)) for o in sells) == 3 * each
        slip = SLIP_BPS / 10_000
        assert all(
            o.amount * fills[o.client_order_id].price / (1 - slip) <= limit * (1 + 1e-9) for o in sells
        )
        st = json.loads(cli(cfg, "trade", "status", "--session", name, "--json").stdout)
        assert abs(st["positions"]["BTC/USDT"]) < 1e-12 and st["brackets"] == {}
    finally:
        s.stop()
