"""Crash safety (issue 9 §4): a live session (``workbench trade run --mode live``, a real process, the real ccxt
clients) against the replay exchange, SIGKILLed at random moments and restarted, at least 20 times, seeded.

The kills land anywhere: while the engine starts (before or during its reconciliation), while it waits for a
bar, and right after the replay clock stepped (so the kill falls between the decision, the journalled
SUBMITTED, the POST and the venue's answer); the replay also steps while the engine is down (it must back-fill
and act on the last closed bar only, never twice on one). The venue (a thread of this test, with its orders and
trades) outlives every engine. At the end: every client id at the venue once; the journal's orders match the
venue's (status, filled, exchange id); the journal's fills equal the venue's trades; the portfolio rebuilt from
the journal's fills equals the venue's balances (1e-9 relative); no bar decided twice (client ids embed the
bar)."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from live_session import (
    CASH,
    START,
    SYMBOL,
    TF_MS,
    LiveSession,
    assert_agrees,
    bars_of,
    cli,
    flatten_children,
    step,
    venue_orders,
    write_config,
    write_flat,
    write_strategy,
)

from workbench.data.sample import load_sample
from workbench.data.store import Store
from workbench.replay import ReplayExchange
from workbench.trading.journal import Journal, journal_path
from workbench.trading.orders import client_order_id, manual_order_id
from workbench.trading.portfolio import Portfolio
from workbench.types import OrderStatus

ROOT = Path(__file__).resolve().parents[1]
SEED = 9_2026
KILLS = 22


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("crash-home") / "data"
    load_sample(Store(data), ROOT / "data" / "sample", kinds=("candles",))
    return data


def _snapshot(s: LiveSession) -> Counter:
    """The journal's order states right after a kill (what the restart has to resolve)."""
    j = s.journal()
    try:
        return Counter(o.status.value for o in j.orders().values())
    finally:
        j.close()


def _command_order(s: LiveSession) -> None:
    """A manual market buy sent through the journal's command channel, as ``workbench trade order`` does
    (without waiting for the answer: the engine is about to die)."""
    j = Journal(journal_path(s.home, s.name))
    try:
        j.send_command("order", {"symbol": SYMBOL, "side": "buy", "amount": 0.001, "type": "market"}, "test")
    finally:
        j.close()


def _submitted(j, after_seq: int, bar_ms: int) -> bool:
    """An order SUBMITTED in this life, or the decision on ``bar_ms`` made (it made no order: a flat target)."""
    if any(r.data.get("status") == "SUBMITTED" for r in j.read(after_seq=after_seq, kinds=["order"])):
        return True
    return (j.meta_get("decided") or {}).get("bar", 0) >= bar_ms


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(home, tmp_path) -> None:
    rng = random.Random(SEED)
    replay = ReplayExchange(Store(home), [SYMBOL], "5m", start=START, speed=0, balances={"USDT": CASH},
                            timeout_fault_s=3.0)  # fmt: skip
    with replay.run_in_thread():
        cfg = write_config(tmp_path / "config", replay, home)
        s = LiveSession(cfg, home, replay, "crash", write_strategy(tmp_path / "strategies"), "--size", "0.8")
        first_bar = replay.now_ms() - 2 * TF_MS
        in_flight = 0  # kills that left an order SUBMITTED (sent, answer not journalled)
        try:
            for _ in range(KILLS):
                s.start()
                how = rng.random()
                down = rng.choice([0, 0, 1, 2])  # bars that close while the engine is down
                if how < 0.2 and s.lives > 1:
                    time.sleep(rng.uniform(0.2, 1.6))  # during the start: imports, connect, reconcile
                else:
                    s.running()
                    for _ in range(rng.randint(0, 2)):
                        step(replay, s)
                    if how < 0.65:
                        if (
                            rng.random() < 0.4
                        ):  # a manual order command (the CLI's channel) in the same moment
                            _command_order(s)
                        replay.advance(TF_MS)  # a bar closes: the engine decides and sends...
                        time.sleep(rng.choice([0.0, rng.uniform(0.0, 0.1), rng.uniform(0.0, 0.5)]))
                    else:
                        # ...or, for certain, dies with the POST in flight: the venue took the order (its answer
                        # is held back), or holds the request unprocessed (it is never placed)
                        held = "timeout-after-accept" if how < 0.85 else "timeout"
                        down = max(down, int(held == "timeout"))  # the outcome window passes while it is down
                        replay.inject(held, path="/api/v3/order", method="POST")
                        mark = s.last_seq()
                        t = replay.advance(TF_MS)
                        s.wait(lambda j, m=mark, b=t - TF_MS: _submitted(j, m, b), step=0.01)
                s.kill()  # ...and dies somewhere in there
                replay.clear_faults()
                snap = _snapshot(s)
                in_flight += snap[OrderStatus.SUBMITTED.value] > 0
                for _ in range(down):
                    replay.advance(TF_MS)
            s.start()
            s.running()
            last = step(replay, s, 2)
            s.stop()
        finally:
            if s.p is not None and s.p.poll() is None:
                s.kill()
        assert s.p.returncode == 0, s.text()[-4000:]
        got = assert_agrees(s)
    assert s.lives == KILLS + 1
    # every manual order command was answered once and placed at most once (its id is the command's seq)
    j = s.journal()
    try:
        commands = [r for r in j.read(kinds=["command"]) if r.data.get("name") == "order"]
        acks = [j.get_ack(r.key) for r in commands]
    finally:
        j.close()
    assert commands and all(a is not None for a in acks), acks
    manual = {manual_order_id(s.name, SYMBOL, r.seq) for r in commands}
    placed = [o.clientOrderId for o in got["orders"] if o.clientOrderId in manual]
    assert placed and len(placed) == len(set(placed))  # (assert_agrees: each matches the journal's order)
    cids = [o.clientOrderId for o in got["orders"] if o.clientOrderId not in manual]
    bars = bars_of(s, cids, first_bar, last)
    twice = {b: n for b, n in Counter(bars.values()).items() if n > 1}
    assert not twice, f"bars acted on more than once: {twice}"
    assert len(cids) >= 20, f"the strategy traded too little to test anything: {len(cids)} orders"
    assert len(got["trades"]) == len(cids) + len(placed)  # market orders, each filled whole
    assert in_flight >= 1, "no kill landed while an order was in flight"
    print(
        f"{s.lives} lives, {len(cids)} strategy and {len(placed)} manual orders, {in_flight} kills in flight"
    )


WRITER = """
import sys
from pathlib import Path
from workbench.trading.journal import Journal
root = Path(sys.argv[1])
for i in range(int(sys.argv[2])):
    Journal(root / f"s{i}" / "journal.sqlite").close()
"""


def test_a_journal_being_created_is_never_seen_without_its_schema(tmp_path) -> None:
    """A reader (``trade status``, a dashboard, a test waiting on the engine) that opens a session's journal the
    moment the file appears finds a journal, never "not a workbench journal": the engine creates it whole."""
    import subprocess
    import sys

    from workbench.trading.journal import Journal

    n = 40
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n)], env={"PYTHONPATH": str(ROOT)})
    seen = 0
    try:
        for i in range(n):
            path = tmp_path / f"s{i}" / "journal.sqlite"
            while not path.exists():
                assert p.poll() in (None, 0)
                if p.poll() == 0 and not path.exists():
                    raise AssertionError(f"{path} never appeared")
            Journal(path, readonly=True).close()  # at once: raises if the schema is not there yet
            seen += 1
    finally:
        p.wait(60)
    assert p.returncode == 0 and seen == n
    assert not [f.name for f in tmp_path.rglob(".*")], "temporary files left behind"


@pytest.mark.slow
def test_a_kill_while_the_first_of_two_orders_is_in_flight_loses_no_decision(home, tmp_path) -> None:
    """Two symbols, two orders on one bar. The engine dies while the first order's POST is in flight (the venue
    took it and holds the answer back); the second was never sent. The restart must take the bar's decision
    again: the first order is recognised by its client id (never resent), the second is sent, once."""
    eth = "ETH/USDT"
    replay = ReplayExchange(Store(home), [SYMBOL, eth], "5m", start=START, speed=0, balances={"USDT": CASH},
                            timeout_fault_s=8.0)  # fmt: skip
    with replay.run_in_thread():
        cfg = write_config(tmp_path / "config", replay, home)
        s = LiveSession(
            cfg,
            home,
            replay,
            "two",
            write_strategy(tmp_path / "strategies"),
            "--size",
            "0.8",
            symbols=(SYMBOL, eth),
        )  # 0.8: sized at 1.0 the bar's second buy is cash-limited on a price that may be a moment old, and the
        # venue refused it now and then for insufficient balance (a missed trade, not what this test is about)
        try:
            s.start()
            s.running()
            step(replay, s, 1)
            replay.inject("timeout-after-accept", path="/api/v3/order", method="POST")
            mark = s.last_seq()
            t = replay.advance(TF_MS)
            s.wait(lambda j: _submitted(j, mark, t - TF_MS), step=0.01)
            s.kill()
            ids = {sym: client_order_id(s.name, s.strategy, sym, t, 0) for sym in (SYMBOL, eth)}
            j = s.journal()
            try:
                at_kill = {c: o.status for c, o in j.orders().items() if c in ids.values()}
            finally:
                j.close()
            assert list(at_kill.values()) == [OrderStatus.SUBMITTED], at_kill  # one in flight, one not sent
            s.start()
            s.running()  # the restart decides the bar again (after it reports RUNNING: wait for the 2nd order)
            deadline = time.monotonic() + 30
            while not all(c in {o.clientOrderId for o in venue_orders(replay)} for c in ids.values()):
                assert time.monotonic() < deadline, (ids, [o.clientOrderId for o in venue_orders(replay)])
                time.sleep(0.05)
            placed = Counter(o.clientOrderId for o in venue_orders(replay))
            assert all(placed[c] == 1 for c in ids.values()), (ids, placed)
            step(replay, s, 1)
            s.stop()
        finally:
            if s.p is not None and s.p.poll() is None:
                s.kill()
        assert s.p.returncode == 0, s.text()[-4000:]
        dup = [c for c, n in Counter(o.clientOrderId for o in venue_orders(replay)).items() if n > 1]
        assert not dup


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["timeout-after-accept", "timeout"], ids=["placed", "never-placed"])
def test_a_kill_in_the_middle_of_a_split_flatten_sells_nothing_twice(home, tmp_path, fault) -> None:
    """A position of 3.4 x max_order_notional; ``trade halt --flatten``; the engine dies while the first of the
    4 children is in flight, the other 3 never sent. ``placed``: the venue took it and holds the answer back;
    ``never-placed``: the venue holds the request unprocessed (it never executes it). The restart comes up
    HALTED, learns the first child's fate (filled; or, after the outcome window, not found at the venue: its
    amount is sent again under a new id), and sends the 3 others once each (the plan's ids, from the journal):
    at the venue 4 children, each once, adding up exactly to the position, the account flat."""
    from decimal import Decimal

    limit = 1_000.0
    replay = ReplayExchange(Store(home), [SYMBOL], "5m", start=START, speed=0, balances={"USDT": CASH},
                            timeout_fault_s=8.0)  # fmt: skip
    with replay.run_in_thread():
        cfg = write_config(tmp_path / "config", replay, home, outcome_window_s=4.0, max_order_notional=limit)
        s = LiveSession(cfg, home, replay, f"kill-flatten-{fault}", write_flat(tmp_path / "strategies"))
        try:
            s.start()
            s.running()
            step(replay, s, 1)
            j = s.journal()
            lot = Decimal(repr(j.meta_get("markets")[SYMBOL]["amount_step"]))
            j.close()
            st = json.loads(cli(cfg, replay, "trade", "status", "--session", s.name, "--json").stdout)
            price = st["prices"][SYMBOL]
            each = Decimal(int(0.85 * limit / price / float(lot))) * lot
            for _ in range(4):
                p = cli(cfg, replay, "trade", "order", "--session", s.name, "-s", SYMBOL, "--side", "buy",
                        "--amount", str(each))  # fmt: skip
                assert "FILLED" in p.stdout, p.stdout
            replay.inject(fault, path="/api/v3/order", method="POST")
            j = Journal(journal_path(home, s.name))
            try:
                cid = j.send_command("halt", {"flatten": True}, "test")
                seq = next(r.seq for r in j.read(kinds=["command"]) if r.key == cid)
            finally:
                j.close()
            first = client_order_id(s.name, "flatten", SYMBOL, seq, 0)
            s.wait(lambda j: (o := j.orders().get(first)) is not None and o.status is OrderStatus.SUBMITTED)
            if fault == "timeout-after-accept":
                # the venue took it (its answer held back for 8 s): the kill lands with the child in flight
                s.wait(lambda j: any(o.clientOrderId == first for o in venue_orders(replay)), step=0.01)
            else:  # the request reached the venue, which holds it unprocessed
                time.sleep(0.5)
            s.kill()
            replay.clear_faults()
            at_venue = [
                o.clientOrderId for o in venue_orders(replay) if o.clientOrderId.startswith("flatten.")
            ]
            # one child placed (its answer lost) or none; the 3 others never sent
            assert at_venue == ([first] if fault == "timeout-after-accept" else [])
            s.start()
            s.running()
            s.wait(lambda j: j.get_ack(cid) is not None)
            s.wait(lambda j: (j.meta_get("flatten") or {}).get("done"))  # every child settled
            st = json.loads(cli(cfg, replay, "trade", "status", "--session", s.name, "--json").stdout)
            assert st["risk_state"] == "HALTED"
            s.stop()
        finally:
            if s.p is not None and s.p.poll() is None:
                s.kill()
        assert s.p.returncode == 0, s.text()[-4000:]
        got = assert_agrees(s)
    kids = [o for o in got["orders"] if o.clientOrderId.startswith("flatten.")]
    assert len(kids) == 4 and len({o.clientOrderId for o in kids}) == 4, [o.clientOrderId for o in kids]
    sold = sum(Decimal(repr(float(o.executedQty))) for o in kids)
    assert sold == 4 * each
    j = s.journal()
    try:
        assert [o.client_order_id for o in flatten_children(j, seq)] == [o.clientOrderId for o in kids]
        # never placed: its amount went out again under an id of a new generation of the plan
        assert j.meta_get("flatten")["gen"] == (0 if fault == "timeout-after-accept" else 1)
        pf = Portfolio.from_fills("USDT", j.meta_get("initial_balances"), j.fills())
        assert abs(pf.position(SYMBOL).amount) < 1e-12
    finally:
        j.close()
