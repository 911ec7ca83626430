"""The session journal on real SQLite files, with real processes: readers following a writer, a writer SIGKILLed
at random moments, commands sent from another process and acknowledged."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from workbench.trading.journal import (
    SCHEMA_VERSION,
    Journal,
    JournalError,
    fill_from_dict,
    fill_to_dict,
    journal_path,
    order_from_dict,
    order_to_dict,
    session_dir,
)
from workbench.types import Fill, Order, OrderStatus, OrderType, Side

CTX = mp.get_context("fork")  # fast children; each opens its own connection


def _order(cid: str = "c1", **kw) -> Order:
    base = dict(
        client_order_id=cid, symbol="BTC/USDT", side=Side.BUY, type=OrderType.LIMIT, amount=0.5, price=100.0
    )
    return Order(**{**base, **kw})


def _fill(tid: str, cid: str = "c1", **kw) -> Fill:
    base = dict(
        client_order_id=cid,
        symbol="BTC/USDT",
        side=Side.BUY,
        amount=0.1,
        price=100.0,
        fee=0.01,
        fee_currency="USDT",
        timestamp=1_000 + int(tid) if tid.isdigit() else 1_000,
        trade_id=tid,
    )
    return Fill(**{**base, **kw})


def _payload(i: int) -> dict:
    body = "x" * (i * 37 % 3000)  # rows of very different sizes, some spanning pages
    return {"i": i, "body": body, "h": hashlib.sha256(f"{i}{body}".encode()).hexdigest()}


def _check_payload(data: dict) -> None:
    assert data["h"] == hashlib.sha256(f"{data['i']}{data['body']}".encode()).hexdigest(), "torn row"


# ------------------------------------------------------------------------------------------- basics


def test_new_journal_is_wal_full_sync_with_schema_version(tmp_path: Path) -> None:
    path = journal_path(tmp_path, "sma_cross-BTC/USDT-5m")
    assert path == tmp_path / "trading" / "sessions" / "sma_cross-BTC_USDT-5m" / "journal.sqlite"
    with Journal(path) as j:
        assert j.meta_get("schema_version") == SCHEMA_VERSION
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert j.last_seq() == 0
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with pytest.raises(JournalError):
        session_dir(tmp_path, "..")
    with pytest.raises(JournalError):
        session_dir(tmp_path, " ")


def test_opening_newer_or_foreign_files_fails_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=r"j\.sqlite.*newer"):
        Journal(path)
    with pytest.raises(JournalError, match=r"j\.sqlite.*newer"):
        Journal(path, readonly=True)

    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=r"other\.sqlite.*not a workbench journal"):
        Journal(other)

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(JournalError, match=r"garbage\.sqlite"):
        Journal(garbage)

    with pytest.raises(JournalError, match="no such journal"):
        Journal(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()


def test_append_read_follow_by_seq(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        s1 = j.append("log", {"level": "info", "message": "a"}, ts=5)
        s2 = j.append("price", {"symbol": "BTC/USDT", "last": 1.0}, key="BTC/USDT")
        s3, s4 = j.append_many([("equity", {"equity": 1.0}), ("candle", {"c": [1, 2]}, "BTC/USDT|5m", 7)])
        assert [s1, s2, s3, s4] == [1, 2, 3, 4]
        assert j.last_seq() == 4
        rows = j.read()
        assert [r.seq for r in rows] == [1, 2, 3, 4]
        assert rows[0].ts == 5 and rows[0].kind == "log" and rows[0].data == {"level": "info", "message": "a"}
        assert rows[3].key == "BTC/USDT|5m" and rows[3].ts == 7
        assert [r.seq for r in j.read(after_seq=2)] == [3, 4]
        assert [r.kind for r in j.read(kinds=["price", "candle"])] == ["price", "candle"]
        assert [r.seq for r in j.read(limit=2)] == [1, 2]
        with pytest.raises(JournalError, match="unknown row kind 'nope'"):
            j.append("nope", {})
        # a batch is all or nothing: a bad row (NaN is not JSON) writes nothing
        with pytest.raises(JournalError, match=r"equity row.*not JSON"):
            j.append_many([("log", {"m": 1}), ("equity", {"equity": float("nan")})])
        assert j.last_seq() == 4


def test_orders_latest_state_fills_once(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        o = _order("a", created_ms=1, updated_ms=1)
        j.record_order(o)
        j.record_order(_order("b", side=Side.SELL, created_ms=2, updated_ms=2))
        o = o.with_status(OrderStatus.SUBMITTED, ts_ms=3)
        j.record_order(o)
        f = _fill("1", "a")
        o2 = o.with_fill(f)
        assert j.record_fill(f, o2) is True
        assert j.record_fill(f, o2) is False  # once only; nothing written
        assert (
            j.record_fill(_fill("1", "a", amount=0.2)) is False
        )  # same trade id: a duplicate whatever it says
        assert j.record_fill(_fill("1", "x", symbol="ETH/USDT")) is True  # trade ids are per symbol
        orders = j.orders()
        assert list(orders) == ["a", "b"]
        assert orders["a"] == o2 and orders["a"].status is OrderStatus.PARTIALLY_FILLED
        assert [x.trade_id for x in j.fills()] == ["1", "1"]
        assert len(j.read(kinds="fill")) == 2
        assert j.last_fill_ts() == 1001
        assert j.has_fill("BTC/USDT", "1") and not j.has_fill("BTC/USDT", "2")
        with pytest.raises(JournalError, match=r"already recorded.*fill BTC/USDT\|1"):
            j.append("fill", fill_to_dict(f), key="BTC/USDT|1")  # the unique key holds for raw appends too


def test_synchronous_normal_is_an_option(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite", synchronous="normal") as j:
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 1
    with pytest.raises(JournalError, match="FULL or NORMAL"):
        Journal(tmp_path / "k.sqlite", synchronous="OFF")


def test_record_dict_roundtrip() -> None:
    o = _order(
        "z",
        status=OrderStatus.CANCELED,
        filled=0.25,
        avg_price=99.5,
        exchange_order_id="123",
        created_ms=1,
        updated_ms=2,
        tag="manual",
        reduce_only=True,
        reason="x",
    )
    assert order_from_dict(json.loads(json.dumps(order_to_dict(o)))) == o
    f = _fill("9", exchange_order_id="123", liquidity="maker", tag="manual", fee_currency="BNB")
    assert fill_from_dict(json.loads(json.dumps(fill_to_dict(f)))) == f
    with pytest.raises(ValueError, match="lacks the field 'symbol'"):
        order_from_dict({"client_order_id": "a"})


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    secret = "S3CR3T-abcdefghijklmnop"
    with Journal(path) as j:
        j.meta_set(
            "config", {"exchanges": {"binance": {"ccxt": {"apiKey": secret, "secret": secret, "timeout": 5}}}}
        )
        j.append("log", {"level": "info", "message": "connect", "params": [{"api_secret": secret}]})
        assert j.meta_get("config")["exchanges"]["binance"]["ccxt"] == {
            "apiKey": "***",
            "secret": "***",
            "timeout": 5,
        }
        assert j.read()[0].data["params"] == [{"api_secret": "***"}]
        with pytest.raises(JournalError):
            j.meta_set("schema_version", 99)
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert secret.encode() not in raw


def test_readonly_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.append("log", {"m": 1})
    with Journal(path, readonly=True) as r:
        assert [x.data for x in r.read()] == [{"m": 1}]
        with pytest.raises(JournalError, match="read-only"):
            r.append("log", {"m": 2})
        with pytest.raises(JournalError, match="read-only"):
            r.send_command("pause")


def test_commands_pending_ack_and_wait(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        a = j.send_command("pause", {}, "cli")
        b = j.send_command("order", {"symbol": "BTC/USDT", "amount": 1}, "dashboard")
        pend = j.pending_commands()
        assert [p.key for p in pend] == [a, b]
        assert pend[1].data == {
            "id": b,
            "name": "order",
            "args": {"symbol": "BTC/USDT", "amount": 1},
            "source": "dashboard",
        }
        assert j.ack(a, True, "paused") is not None
        assert j.ack(a, False, "again") is None  # answered once
        assert [p.key for p in j.pending_commands()] == [b]
        assert [p.key for p in j.pending_commands(after_seq=pend[1].seq)] == []
        assert j.wait_ack(a, timeout_s=1) == {"id": a, "ok": True, "message": "paused"}
        assert j.wait_ack(b, timeout_s=0.05) is None
        with pytest.raises(JournalError, match="no command 'nope'"):
            j.ack("nope", True)


def test_export_shape(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        o = _order("a", type=OrderType.MARKET, price=None, amount=1.0, created_ms=1, updated_ms=1)
        j.record_order(o)
        o = o.with_status(OrderStatus.SUBMITTED, ts_ms=2)
        j.record_order(o)
        f1 = _fill("1", "a", amount=1.0, fee=0.001, fee_currency="BTC")  # base fee: 0.999 held
        o = o.with_fill(f1)
        j.record_fill(f1, o)
        s = _order("s", side=Side.SELL, type=OrderType.MARKET, price=None, amount=0.5)
        j.record_order(s.with_status(OrderStatus.SUBMITTED))
        j.record_fill(_fill("2", "s", side=Side.SELL, amount=0.5, fee=0.05))
        j.record_equity(10, 1000.0, cash=900.0, exposure=0.1)
        j.record_risk(11, "refused", "max_order_notional: 2000 > 1000", limit="max_order_notional")
        out = j.export()
    assert set(out) == {"orders", "fills", "risk_events", "equity", "positions", "brackets"}
    assert out["brackets"] == []  # no manual stop-loss / take-profit was set
    assert {
        k: out["orders"][0][k]
        for k in ("client_order_id", "exchange_order_id", "symbol", "side", "type", "amount", "status")
    } == {
        "client_order_id": "a",
        "exchange_order_id": None,
        "symbol": "BTC/USDT",
        "side": "buy",
        "type": "market",
        "amount": 1.0,
        "status": "FILLED",
    }
    f = out["fills"][0]
    assert {
        k: f[k]
        for k in ("timestamp", "client_order_id", "symbol", "side", "amount", "price", "fee", "fee_currency")
    } == {
        "timestamp": 1001,
        "client_order_id": "a",
        "symbol": "BTC/USDT",
        "side": "buy",
        "amount": 1.0,
        "price": 100.0,
        "fee": 0.001,
        "fee_currency": "BTC",
    }
    assert out["positions"] == {"BTC/USDT": pytest.approx(0.499)}
    assert out["equity"] == [{"timestamp": 10, "equity": 1000.0, "cash": 900.0, "exposure": 0.1}]
    assert out["risk_events"][0]["event"] == "refused" and out["risk_events"][0]["timestamp"] == 11
    json.dumps(out, allow_nan=False)


# ------------------------------------------------------------------------------ processes: follow


def _writer(path: str, n: int) -> None:
    with Journal(path) as j:
        for i in range(n):
            if i % 10 == 9:
                j.append_many([("log", _payload(i)), ("log", _payload(i + 100_000))])
            else:
                j.append("log", _payload(i))
        j.append("state", {"state": "done"})
    os._exit(0)


def _reader(path: str, q) -> None:
    try:
        while not Path(path).exists():
            time.sleep(0.01)
        while True:
            try:
                r = Journal(path, readonly=True)
                break
            except JournalError:  # the writer is still creating the schema
                time.sleep(0.01)
        last, seen, reads, done = 0, 0, 0, False
        while not done:
            rows = r.read(after_seq=last)
            reads += 1
            for row in rows:
                assert row.seq == last + 1, f"gap or repeat: {last} -> {row.seq}"
                last = row.seq
                if row.kind == "state":
                    done = True
                else:
                    _check_payload(row.data)
                    seen += 1
            if not rows:
                time.sleep(0.002)
        q.put(("ok", seen, reads))
    except BaseException as e:  # report, never hang the parent
        q.put(("error", repr(e), 0))
    q.close()
    q.join_thread()  # flush the queue before the hard exit
    os._exit(0)


def test_readers_follow_a_writer_in_other_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite")
    q = CTX.Queue()
    readers = [CTX.Process(target=_reader, args=(path, q)) for _ in range(2)]
    for p in readers:
        p.start()
    n = 400
    w = CTX.Process(target=_writer, args=(path, n))
    w.start()
    w.join(120)
    assert w.exitcode == 0
    results = [q.get(timeout=60) for _ in readers]
    for p in readers:
        p.join(30)
    expected = n + n // 10
    for status, seen, reads in results:
        assert status == "ok", seen
        assert seen == expected
        assert reads >= 1


# ------------------------------------------------------------------------------ processes: SIGKILL


def _kill_writer(path: str, fd: int, start: int, seed: int) -> None:
    """Append rows forever, reporting each committed seq (after append() returned) on ``fd``; re-record
    fills 0..start/5 (duplicates after the first run) and new ones."""
    rng = random.Random(seed)
    j = Journal(path)
    i = start
    while True:
        r = rng.random()
        if r < 0.15:
            tid = str(rng.randrange(0, i // 5 + 2))  # often one already recorded
            f = _fill(tid, "c1", amount=0.001)
            if j.record_fill(f):
                os.write(fd, f"f {tid}\n".encode())
        elif r < 0.25:
            seqs = j.append_many([("log", _payload(i)), ("log", _payload(i + 1))])
            os.write(fd, f"r {seqs[0]} {i}\nr {seqs[1]} {i + 1}\n".encode())
            i += 2
            continue
        else:
            s = j.append("log", _payload(i))
            os.write(fd, f"r {s} {i}\n".encode())
        i += 1


def test_sigkill_writer_at_random_moments_loses_no_committed_row(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite")
    Journal(path).close()
    rng = random.Random(20261201)
    acked: dict[int, int] = {}
    fills_acked: set[str] = set()
    kills = 22
    for k in range(kills):
        with Journal(path) as j:
            start = 1 + max((r.data["i"] for r in j.read(kinds="log")), default=0)
        rfd, wfd = os.pipe()
        p = CTX.Process(target=_kill_writer, args=(path, wfd, start, k))
        p.start()
        os.close(wfd)
        want = rng.randint(1, 60)
        buf = b""
        with os.fdopen(rfd, "rb", buffering=0) as rf:
            while buf.count(b"\n") < want:
                chunk = rf.read(4096)
                assert chunk, "the writer died on its own"
                buf += chunk
            os.kill(p.pid, signal.SIGKILL)
            p.join(30)
            buf += rf.read()  # what it reported before the kill landed
        assert p.exitcode == -signal.SIGKILL
        for line in buf.decode().splitlines():
            parts = line.split()
            if len(parts) < 2 or (parts[0] == "r" and len(parts) < 3):
                continue  # a report cut by the kill (the row itself may still be committed)
            if parts[0] == "r":
                acked[int(parts[1])] = int(parts[2])
            else:
                fills_acked.add(parts[1])
        # reopen after each kill: clean, everything reported is there
        with Journal(path) as j:
            assert j.integrity_check() == "ok"
    with Journal(path) as j:
        rows = j.read()
        seqs = [r.seq for r in rows]
        assert seqs == sorted(set(seqs)), "seq not strictly increasing"
        by_seq = {r.seq: r for r in rows}
        for s, i in acked.items():
            assert s in by_seq, f"committed row {s} lost"
            assert by_seq[s].data["i"] == i
        for r in rows:
            if r.kind == "log":
                _check_payload(r.data)
        fill_keys = [r.key for r in rows if r.kind == "fill"]
        assert len(fill_keys) == len(set(fill_keys)), "duplicate fill"
        assert fills_acked <= {k.split("|")[1] for k in fill_keys}
        assert len(acked) >= kills


# ------------------------------------------------------------------------------ processes: commands


def _engine(path: str) -> None:
    """A stand-in engine loop: acknowledge every command; stop on 'stop'."""
    j = Journal(path)
    last = 0
    while True:
        for c in j.pending_commands(after_seq=0):
            last = c.seq
            name = c.data["name"]
            j.ack(c.key, name != "bad", f"{name} done" if name != "bad" else "unknown command", seq=last)
            if name == "stop":
                os._exit(0)
        time.sleep(0.01)


def test_commands_from_another_process_are_acknowledged(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite")
    with Journal(path) as cli:
        early = cli.send_command("status", {}, "cli")  # sent while no engine runs: pending until one does
        eng = CTX.Process(target=_engine, args=(path,))
        eng.start()
        try:
            assert cli.wait_ack(early, timeout_s=60)["ok"] is True
            ids = [cli.send_command(n, {"i": i}, "cli") for i, n in enumerate(["pause", "resume", "bad"])]
            acks = [cli.wait_ack(c, timeout_s=60) for c in ids]
            assert [a["ok"] for a in acks] == [True, True, False]
            assert acks[0]["message"] == "pause done" and acks[2]["message"] == "unknown command"
            stop = cli.send_command("stop", {}, "cli")
            assert cli.wait_ack(stop, timeout_s=60)["ok"] is True
            eng.join(60)
            assert eng.exitcode == 0
            assert cli.pending_commands() == []
        finally:
            if eng.is_alive():
                eng.kill()


# ------------------------------------------------------------------------------ processes: writer lock


def _lock_holder(path: str, fd: int) -> None:
    j = Journal(path)
    j.lock_writer()
    os.write(fd, b"locked\n")
    while True:
        time.sleep(1)


def test_one_engine_per_journal_and_a_killed_one_releases_it(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite")
    Journal(path).close()
    rfd, wfd = os.pipe()
    p = CTX.Process(target=_lock_holder, args=(path, wfd))
    p.start()
    os.close(wfd)
    try:
        with os.fdopen(rfd, "rb", buffering=0) as rf:
            assert rf.readline() == b"locked\n"
        with Journal(path) as j:
            with pytest.raises(
                JournalError, match=rf"another process \(pid {p.pid}\) is running this session"
            ):
                j.lock_writer()
            j.send_command("pause")  # writing commands needs no lock
            os.kill(p.pid, signal.SIGKILL)
            p.join(30)
            j.lock_writer()  # the kernel dropped the dead engine's lock
        with Journal(path) as again:
            again.lock_writer()  # close() released it
        with Journal(path, readonly=True) as r, pytest.raises(JournalError, match="read-only"):
            r.lock_writer()
    finally:
        if p.is_alive():
            p.kill()


def test_latest_row_and_async_wait(tmp_path: Path) -> None:
    import asyncio

    with Journal(tmp_path / "j.sqlite") as j:
        assert j.latest("state") is None
        j.record_state(1, "HALTED", "max_drawdown 0.21 > 0.2", risk={"state": "HALTED"})
        j.record_state(2, "ACTIVE", "started")
        j.append("log", {"m": 1})
        assert j.latest("state").data["state"] == "ACTIVE"
        assert j.latest("state", key="HALTED").data["risk"] == {"state": "HALTED"}
        c = j.send_command("status")

        async def answer_later() -> dict | None:
            waiter = asyncio.create_task(j.wait_ack_async(c, timeout_s=30))
            await asyncio.sleep(0)
            j.ack(c, True, "ok")
            return await waiter

        assert asyncio.run(answer_later())["message"] == "ok"


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_journal_export(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    home = tmp_path / "data"
    with Journal(journal_path(home, "sma_cross-BTC/USDT-5m")) as j:
        o = _order("a", type=OrderType.MARKET, price=None, amount=0.1).with_status(OrderStatus.SUBMITTED)
        j.record_order(o)
        j.record_fill(_fill("1", "a"), o.with_fill(_fill("1", "a")))
        j.record_equity(5, 10_000.0)
        # a manual stop-loss / take-profit: pending, then armed (its latest state is exported), and one canceled
        j.append(
            "bracket",
            {"symbol": "BTC/USDT", "status": "pending", "stop": 90.0, "take_profit": 120.0},
            key="BTC/USDT",
            ts=6,
        )
        j.append(
            "bracket",
            {"symbol": "BTC/USDT", "status": "armed", "stop": 90.0, "take_profit": 120.0},
            key="BTC/USDT",
            ts=7,
        )
        j.append(
            "bracket",
            {"symbol": "ETH/USDT", "status": "canceled", "stop": 9.0, "reason": "closed"},
            key="ETH/USDT",
            ts=8,
        )
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_HOME", "WORKBENCH_CONFIG")}
    env["PYTHONPATH"] = str(root)
    cmd = [sys.executable, "-m", "workbench.cli", "--home", str(home), "journal", "export"]
    out = tmp_path / "out" / "export.json"
    p = subprocess.run(
        [*cmd, "--session", "sma_cross-BTC/USDT-5m", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "1 orders, 1 fills" in p.stderr
    data = json.loads(out.read_text())
    assert data["orders"][0]["status"] == "FILLED" and data["positions"] == {"BTC/USDT": 0.1}
    assert data["equity"] == [{"timestamp": 5, "equity": 10_000.0}]
    assert data["brackets"] == [
        {"timestamp": 7, "symbol": "BTC/USDT", "status": "armed", "stop": 90.0, "take_profit": 120.0},
        {"timestamp": 8, "symbol": "ETH/USDT", "status": "canceled", "stop": 9.0, "reason": "closed"},
    ]
    p = subprocess.run(
        [*cmd, "--session", "nope", "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    assert p.returncode == 1 and "no journal for session 'nope'" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x.json").exists()


def test_reconcile_skips_the_bars_a_backtest_has_no_equity_for() -> None:
    """A stored or ``--json`` backtest writes a bar without equity (NaN) as null: reconcile compares the others."""
    from workbench.trading.reconcile import compare

    t0 = 1_704_067_200_000
    backtest = {
        "equity": [("2024-01-01T00:00:00+00:00", None), ("2024-01-01T01:00:00+00:00", 1000.0)],
        "fills": [],
    }
    session = {"equity": [{"timestamp": t0, "equity": 990.0, "bar": True},
                          {"timestamp": t0 + 3_600_000, "equity": 1000.0, "bar": True}], "fills": []}  # fmt: skip
    report = compare(backtest, session)
    assert report["ok"] and report["equity_rel_diff"] == 0.0, report
