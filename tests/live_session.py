"""Helpers for the live-session tests (crash safety, faults): a ``workbench trade run --mode live`` process
against a ReplayExchange served from a thread of the test process (the venue outlives the engine, not the test),
and the checks that the journal and the venue agree.

The venue is read through its Python API (``replay.venue``, under the server's lock): every order it ever
accepted (``allOrders``) and every execution (``myTrades``), which is what a ccxt client would be told.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from workbench.replay import ReplayExchange
from workbench.trading.journal import Journal, journal_path
from workbench.trading.orders import client_order_id
from workbench.trading.portfolio import Portfolio
from workbench.types import OrderStatus

ROOT = Path(__file__).resolve().parents[1]
WB = [sys.executable, "-m", "workbench.cli"]
START = "2024-03-04"
TF_MS = 300_000
SYMBOL = "BTC/USDT"
CASH = 10_000.0

FLIP = '''
"""Long on even bars, flat on odd ones: an order on every bar (the crash and fault tests' strategy)."""
import pandas as pd

from workbench.strategies import Params, Strategy


class Flip(Strategy):
    name = "flip"

    class Params(Params):
        pass

    def warmup(self) -> int:
        return 2

    def target(self, data, features=None):
        bar = (data.index.as_unit("ms").asi8 // 300_000) % 2
        return pd.Series((bar == 0).astype(float), index=data.index, name=self.name)
'''


FLAT = '''
"""Never holds anything: the positions of the flatten tests are manual."""
import pandas as pd

from workbench.strategies import Params, Strategy


class Flat(Strategy):
    name = "flat"

    class Params(Params):
        pass

    def warmup(self) -> int:
        return 2

    def target(self, data, features=None):
        return pd.Series(0.0, index=data.index, name=self.name)
'''


def flatten_children(j: Journal, key: int, symbol: str = SYMBOL) -> list:
    """The journalled orders of the flatten keyed ``key`` (its command's seq), in plan order (the meta's plan
    names them)."""
    plan = j.meta_get("flatten")
    assert plan and plan["key"] == key, plan
    orders = j.orders()
    return [orders[cid] for cid, s, _ in plan["orders"] if s == symbol and cid in orders]


def write_flat(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "flat.py"
    path.write_text(FLAT)
    return f"{path}:Flat"


def write_strategy(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "flip.py"
    path.write_text(textwrap.dedent(FLIP))
    return f"{path}:Flip"


def write_config(
    folder: Path,
    replay: ReplayExchange,
    home: Path,
    *,
    timeout_ms: int = 10_000,
    outcome_window_s: float = 15.0,
    trading_extra: dict[str, Any] | None = None,
    **risk: Any,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wb = {
        "paths": {"data": str(home)},
        "exchanges": {"binance": {"ccxt": replay.ccxt_config(keys=False, timeout_ms=timeout_ms)}},
    }
    trading = {
        "mode": "paper",
        "initial_cash": CASH,
        "fees": {"maker": 0.001, "taker": 0.001},
        "slippage_bps": 5.0,
        "order_outcome_window_s": outcome_window_s,
        "risk": {
            "max_order_notional": 1_000_000,
            "max_position_fraction": 1.0,
            "max_gross_exposure": 1.0,
            "max_drawdown": 0.9,
            "daily_loss_limit": 0.9,
            "max_orders_per_minute": 1000,
            "stale_feed_s": None,
            **risk,
        },
        **(trading_extra or {}),
    }
    (folder / "workbench.yml").write_text(yaml.safe_dump(wb))
    (folder / "trading.yml").write_text(yaml.safe_dump(trading))
    return folder


def env(replay: ReplayExchange) -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for k in ("WORKBENCH_HOME", "WORKBENCH_CONFIG"):
        e.pop(k, None)
    e["WORKBENCH_BINANCE_API_KEY"] = replay.api_key
    e["WORKBENCH_BINANCE_SECRET"] = replay.secret
    return e


def cli(cfg: Path, replay: ReplayExchange, *args: str, check: bool = True, timeout: float = 120):
    p = subprocess.run([*WB, "--config", str(cfg), *args], capture_output=True, text=True, env=env(replay),
                       cwd=ROOT, timeout=timeout)  # fmt: skip
    if check and p.returncode != 0:
        raise AssertionError(f"{args} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


class LiveSession:
    """``workbench trade run --mode live --yes`` processes of one session, one at a time; the log is appended
    over restarts."""

    def __init__(self, cfg: Path, home: Path, replay: ReplayExchange, name: str, strategy: str, *extra: str,
                 symbols: tuple[str, ...] = (SYMBOL,)):  # fmt: skip
        self.cfg, self.home, self.replay, self.name = cfg, home, replay, name
        self.strategy = strategy
        self.args = ["--strategy", strategy, "-e", "binance", *(a for s in symbols for a in ("-s", s)), "-t", "5m",
                     "--mode", "live", "--yes", "--session", name, *extra]  # fmt: skip
        self.logpath = home.parent / f"{name}.log"
        self.p: subprocess.Popen | None = None
        self.lives = 0
        self.mark = 0

    def start(self) -> None:
        assert self.p is None or self.p.poll() is not None
        self.lives += 1
        self.mark = self.last_seq()  # the journal's last sequence number before this life
        with open(self.logpath, "a") as log:
            log.write(f"\n===== life {self.lives}\n")
            log.flush()
            self.p = subprocess.Popen([*WB, "--config", str(self.cfg), "trade", "run", *self.args], cwd=ROOT,
                                      env=env(self.replay), stdout=log, stderr=subprocess.STDOUT, text=True)  # fmt: skip

    def last_seq(self) -> int:
        if not journal_path(self.home, self.name).exists():
            return 0
        j = self.journal()
        try:
            return j.last_seq()
        finally:
            j.close()

    def text(self) -> str:
        return self.logpath.read_text() if self.logpath.exists() else ""

    def journal(self) -> Journal:
        return Journal(journal_path(self.home, self.name), readonly=True)

    def wait(self, what, timeout: float = 90, step: float = 0.05, alive: bool = True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if alive and self.p is not None and self.p.poll() is not None:
                raise AssertionError(f"trade run ended ({self.p.returncode}):\n{self.text()[-6000:]}")
            if journal_path(self.home, self.name).exists():
                j = self.journal()
                try:
                    got = what(j)
                finally:
                    j.close()
                if got:
                    return got
            time.sleep(step)
        raise AssertionError(f"timed out waiting; log:\n{self.text()[-6000:]}")

    def running(self) -> None:
        """Wait until this life of the engine journalled RUNNING."""
        mark = self.mark
        self.wait(
            lambda j: any(r.data.get("state") == "RUNNING" for r in j.read(after_seq=mark, kinds="state"))
        )

    def decided(self, bar_ms: int, timeout: float = 90) -> None:
        self.wait(lambda j: (j.meta_get("decided") or {}).get("bar", 0) >= bar_ms, timeout=timeout)

    def kill(self) -> None:
        assert self.p is not None
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
        self.p.wait(30)

    def stop(self) -> None:
        if self.p is not None and self.p.poll() is None:
            cli(self.cfg, self.replay, "trade", "stop", "--session", self.name)
            self.p.wait(60)


def step(replay: ReplayExchange, session: LiveSession, bars: int = 1) -> int:
    """Advance the replay one bar at a time, each time waiting until the engine decided on the bar just closed."""
    t = replay.now_ms()
    for _ in range(bars):
        t = replay.advance(TF_MS)
        session.decided(t - TF_MS)
    return t


# ---------------------------------------------------------------------------------------------- the venue


def venue_orders(replay: ReplayExchange) -> list[Any]:
    with replay._lock:
        return list(replay.venue.orders)


def venue_trades(replay: ReplayExchange) -> list[Any]:
    with replay._lock:
        return list(replay.venue.trades)


def venue_balances(replay: ReplayExchange) -> dict[str, float]:
    return {a: v["free"] + v["locked"] for a, v in replay.balances().items()}


_VENUE_STATUS = {
    "NEW": OrderStatus.ACCEPTED,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}


def close(a: float, b: float, rel: float = 1e-9, abs_: float = 1e-9) -> bool:
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_)


def assert_agrees(session: LiveSession) -> dict[str, Any]:
    """The journal and the venue agree: no client id twice at the venue, every venue order in the journal with
    its status and filled amount, every journalled order that the venue does not know never placed, the fills
    equal to the venue's trades (ids, amounts, prices, fees), and the portfolio rebuilt from the journal's fills
    equal to the venue's balances. Returns what it read."""
    replay = session.replay
    orders = venue_orders(replay)
    trades = venue_trades(replay)
    dup = {c: n for c, n in Counter(o.clientOrderId for o in orders).items() if n > 1}
    assert not dup, f"client ids sent more than once to the venue: {dup}"
    j = session.journal()
    try:
        jorders = j.orders()
        jfills = j.fills()
        init = j.meta_get("initial_balances")
        rows = j.read(kinds=["order"])
    finally:
        j.close()
    venue_by_cid = {o.clientOrderId: o for o in orders}
    missing = sorted(set(venue_by_cid) - set(jorders))
    assert not missing, f"orders at the venue that the journal lacks: {missing}"
    for cid, vo in venue_by_cid.items():
        jo = jorders[cid]
        want = _VENUE_STATUS[vo.status]
        assert jo.status is want, f"{cid}: journal {jo.status.value}, venue {vo.status}"
        assert close(jo.filled, vo.executedQty), f"{cid}: journal filled {jo.filled}, venue {vo.executedQty}"
        assert jo.exchange_order_id == str(vo.orderId), (cid, jo.exchange_order_id, vo.orderId)
    for cid, jo in jorders.items():
        if cid not in venue_by_cid:
            assert jo.status in (OrderStatus.DENIED, OrderStatus.REJECTED), (
                f"{cid} is {jo.status.value} in the journal but unknown at the venue"
            )
            assert jo.filled == 0
    # every order row (each change) names an order the journal's latest state also has: ids are unique keys
    assert {r.key for r in rows} == set(jorders)
    # fills: once each, equal to the venue's trades
    jf = {f.trade_id: f for f in jfills}
    assert len(jf) == len(jfills), "a trade id journalled twice"
    vt = {str(t.id): t for t in trades}
    assert set(jf) == set(vt), f"fills: journal only {set(jf) - set(vt)}, venue only {set(vt) - set(jf)}"
    cid_of_oid = {o.orderId: o.clientOrderId for o in orders}
    for tid, f in jf.items():
        t = vt[tid]
        assert close(f.amount, t.qty) and close(f.price, t.price) and close(f.fee, t.commission), (f, t)
        assert f.side.value == t.side.lower() and f.client_order_id == cid_of_oid[t.orderId], (f, t)
    # the portfolio rebuilt from the journal equals the venue's balances
    pf = Portfolio.from_fills("USDT", init, jfills)
    vb = venue_balances(replay)
    for ccy in sorted(set(pf.balances) | set(vb)):
        ours, theirs = pf.balances.get(ccy, 0.0), vb.get(ccy, 0.0)
        assert close(ours, theirs, rel=1e-9, abs_=1e-9), (
            f"{ccy}: journal portfolio {ours!r}, venue {theirs!r}"
        )
    return {"orders": orders, "trades": trades, "journal_orders": jorders, "fills": jfills}


def bars_of(session: LiveSession, cids: list[str], first_ms: int, last_ms: int) -> dict[str, int]:
    """The bar each strategy client id was decided for (client ids embed the bar: recomputed over the range)."""
    table = {}
    for bar in range(first_ms, last_ms + TF_MS, TF_MS):
        for seq in range(3):
            table[client_order_id(session.name, session.strategy, SYMBOL, bar, seq)] = bar
    unknown = [c for c in cids if c not in table]
    assert not unknown, f"client ids that are no strategy decision in the range: {unknown}"
    return {c: table[c] for c in cids}
