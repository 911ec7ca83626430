"""The session journal: durable, append-only, crash-safe; the one record of a trading session.

One SQLite file per session, ``<data>/trading/sessions/<session>/journal.sqlite`` (:func:`journal_path`), in WAL
mode: one writer (the engine) and many readers in other processes (CLI, notebooks, dashboards), which also
insert commands. Readers never open an exchange connection: everything they show is here.

Commit protocol (what a reader or a restarted engine may rely on):

- Every write is its own committed transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``; :meth:`Journal.append_many`
  one per batch) with ``synchronous=FULL``: once :meth:`~Journal.append` returns, the row survives a SIGKILL or
  a power cut; a write interrupted before its commit leaves nothing (SQLite rolls the WAL back on the next open).
- One table, ``journal(seq, ts, kind, key, data)``; ``seq`` is a global sequence number (``AUTOINCREMENT``)
  allocated inside the write transaction. Writers are serialised, so a row with a lower ``seq`` is always committed
  before one with a higher ``seq``: a reader that has seen everything up to ``seq = n`` follows the journal with
  ``read(after_seq=n)`` and never misses or re-reads a row, and never sees a torn one.
- ``kind`` is one of :data:`KINDS`. ``order`` rows hold the full :class:`~workbench.types.Order` after every change
  (the latest row per key = client order id is its state); ``fill`` rows are keyed ``<symbol>|<trade_id>`` and
  unique (a partial unique index): a fill is recorded once, a duplicate insert returns ``False`` and writes
  nothing. Trade ids are per symbol at Binance, hence the symbol in the key. ``command`` rows (key = command id)
  are answered by at most one ``ack`` row with the same key (unique too).
  ``bracket`` rows (key = symbol) hold the stop-loss / take-profit levels of a symbol's manual sub-position after
  every change (``pending`` until its entry fills, ``armed``, then ``triggered`` or ``canceled``): the latest
  row per symbol is its state (the engine rebuilds its brackets from them).
- ``meta`` (key -> JSON value) holds ``schema_version`` (:data:`SCHEMA_VERSION`); opening a journal written by a
  newer version is an error, as is opening a file that is not a journal.
- Secrets never enter the journal: every mapping written (rows and meta) is passed through :func:`redact_secrets`,
  which replaces the value of any credential-like key (``apiKey``, ``secret``, ``password``, ...) by ``"***"``.

Commands (``workbench trade pause``, a dashboard's manual order) are rows of kind ``command`` written by any
process (:meth:`Journal.send_command`); the engine polls :meth:`Journal.pending_commands` and answers each with
:meth:`Journal.ack`; the sender waits with :meth:`Journal.wait_ack`. A command whose ack was not committed before
a crash is pending again after the restart (at-least-once): commands must be idempotent, which is why a manual
order's client id is derived from its command (see :func:`workbench.trading.orders.client_order_id`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from workbench.config import is_secret_key
from workbench.types import Fill, Order, OrderStatus, OrderType, Side, TimeInForce

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "Journal",
    "JournalError",
    "JournalRow",
    "fill_from_dict",
    "fill_key",
    "fill_to_dict",
    "journal_path",
    "order_from_dict",
    "order_to_dict",
    "redact_secrets",
    "session_dir",
]

SCHEMA_VERSION: Final = 1
KINDS: Final = frozenset(
    {
        "order",
        "fill",
        "position",
        "equity",
        "risk",
        "state",
        "command",
        "ack",
        "price",
        "book",
        "candle",
        "log",
        "bracket",
    }
)
BUSY_TIMEOUT_MS: Final = 30_000
_SESSION_RE: Final = re.compile(r"[^A-Za-z0-9._-]")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_kind_seq ON journal (kind, seq);
CREATE INDEX IF NOT EXISTS journal_kind_key ON journal (kind, key, seq);
CREATE UNIQUE INDEX IF NOT EXISTS journal_fill_once ON journal (key) WHERE kind = 'fill';
CREATE UNIQUE INDEX IF NOT EXISTS journal_command_once ON journal (key) WHERE kind = 'command';
CREATE UNIQUE INDEX IF NOT EXISTS journal_ack_once ON journal (key) WHERE kind = 'ack';
"""


class JournalError(ValueError):
    """A journal that cannot be opened or written as asked; the message names the file."""


@dataclass(frozen=True, slots=True)
class JournalRow:
    seq: int
    ts: int
    kind: str
    key: str | None
    data: Any


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def session_dir(data_dir: str | Path, session: str) -> Path:
    """The folder of ``session``'s files: ``<data>/trading/sessions/<name>``. Characters outside
    ``[A-Za-z0-9._-]`` (the ``/`` of ``BTC/USDT``) become ``_``, so a session name is always one folder."""
    if not session or not session.strip():
        raise JournalError("a session name must not be empty")
    name = _SESSION_RE.sub("_", session.strip())
    if name in (".", ".."):
        raise JournalError(f"invalid session name {session!r}")
    return Path(data_dir) / "trading" / "sessions" / name


def journal_path(data_dir: str | Path, session: str) -> Path:
    return session_dir(data_dir, session) / "journal.sqlite"


def redact_secrets(value: Any) -> Any:
    """``value`` with the value of every credential-like mapping key replaced by ``"***"`` (recursively)."""
    if isinstance(value, Mapping):
        return {
            k: ("***" if is_secret_key(k) and v not in (None, "") else redact_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_secrets(v) for v in value]
    return value


# ------------------------------------------------------------------------------------ record <-> JSON


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def order_to_dict(order: Order) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id,
        "exchange_order_id": order.exchange_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.type.value,
        "amount": order.amount,
        "price": order.price,
        "time_in_force": order.time_in_force.value,
        "status": order.status.value,
        "filled": order.filled,
        "avg_price": order.avg_price,
        "created_ms": order.created_ms,
        "updated_ms": order.updated_ms,
        "tag": order.tag,
        "reduce_only": order.reduce_only,
        "reason": order.reason,
    }


def order_from_dict(d: Mapping[str, Any]) -> Order:
    try:
        return Order(
            client_order_id=str(d["client_order_id"]),
            symbol=str(d["symbol"]),
            side=Side(d["side"]),
            type=OrderType(d["type"]),
            amount=float(d["amount"]),
            price=_num(d.get("price")),
            time_in_force=TimeInForce(d.get("time_in_force", "GTC")),
            status=OrderStatus(d.get("status", "INITIALIZED")),
            filled=float(d.get("filled", 0.0)),
            avg_price=_num(d.get("avg_price")),
            exchange_order_id=None if d.get("exchange_order_id") is None else str(d["exchange_order_id"]),
            created_ms=int(d.get("created_ms", 0)),
            updated_ms=int(d.get("updated_ms", 0)),
            tag=str(d.get("tag", "strategy")),
            reduce_only=bool(d.get("reduce_only", False)),
            reason=d.get("reason"),
        )
    except KeyError as e:
        raise ValueError(f"order record {dict(d)!r} lacks the field {e.args[0]!r}") from None


def fill_to_dict(fill: Fill) -> dict[str, Any]:
    return {
        "trade_id": fill.trade_id,
        "timestamp": fill.timestamp,
        "client_order_id": fill.client_order_id,
        "exchange_order_id": fill.exchange_order_id,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "amount": fill.amount,
        "price": fill.price,
        "fee": fill.fee,
        "fee_currency": fill.fee_currency,
        "liquidity": fill.liquidity,
        "tag": fill.tag,
    }


def fill_from_dict(d: Mapping[str, Any]) -> Fill:
    try:
        return Fill(
            client_order_id=str(d["client_order_id"]),
            symbol=str(d["symbol"]),
            side=Side(d["side"]),
            amount=float(d["amount"]),
            price=float(d["price"]),
            fee=float(d.get("fee", 0.0)),
            fee_currency=str(d["fee_currency"]),
            timestamp=int(d["timestamp"]),
            trade_id=str(d["trade_id"]),
            exchange_order_id=None if d.get("exchange_order_id") is None else str(d["exchange_order_id"]),
            liquidity=str(d.get("liquidity", "taker")),
            tag=str(d.get("tag", "strategy")),
        )
    except KeyError as e:
        raise ValueError(f"fill record {dict(d)!r} lacks the field {e.args[0]!r}") from None


def fill_key(fill: Fill) -> str:
    """The journal key of a fill: trade ids are unique per symbol (Binance), so the key holds both."""
    return f"{fill.symbol}|{fill.trade_id}"


def held_change(fill: Fill) -> float:
    """The signed change of the base amount held after ``fill`` (a fee charged in the base is kept back)."""
    base = fill.symbol.partition("/")[0]
    return fill.signed_amount - (fill.fee if fill.fee_currency == base else 0.0)


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(redact_secrets(value), separators=(",", ":"), allow_nan=False, default=_default)
    except (TypeError, ValueError) as e:
        raise JournalError(f"{what}: not JSON data ({e})") from None


def _default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


# --------------------------------------------------------------------------------------------- journal


class Journal:
    """The journal of one session (see the module docstring for the commit protocol).

    ``readonly=True`` opens an existing journal for reading (it is never created, written or migrated; a missing
    file is an error). A writer creates the file, its folder and the schema. Thread-safe (one lock per object);
    use one object per process.

    ``synchronous``: ``"FULL"`` (the default) syncs the WAL on every commit: a committed row survives a power
    cut. ``"NORMAL"`` syncs only at checkpoints: a committed row still survives a SIGKILL of the process (the
    WAL is in the OS's cache), but the last commits may be lost in a power cut; several times cheaper per row.

    Checkpoints: by default SQLite copies the WAL back into the database inside the commit that fills it past
    1,000 pages (a few hundred rows here); that commit then takes milliseconds (it syncs the WAL and the file,
    whatever ``synchronous`` says). :meth:`start_checkpointer` moves them to a background thread with its own
    connection (the engine's hot path stays free of them; ``docs/benchmarks.md``, "Trading engine").
    """

    def __init__(self, path: str | Path, readonly: bool = False, *, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.readonly = readonly
        if synchronous.upper() not in ("FULL", "NORMAL"):
            raise JournalError(f"{self.path}: synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.synchronous = synchronous.upper()
        self._lock = threading.RLock()
        self._writer_lock: IO[str] | None = None
        self._checkpointer: threading.Thread | None = None
        self._checkpointer_stop = threading.Event()
        self.checkpoints = 0
        """Checkpoints completed by the background checkpointer (:meth:`start_checkpointer`)."""
        if readonly and not self.path.is_file():
            raise JournalError(f"{self.path}: no such journal")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self._create()
        try:
            mode = "rw" if readonly else "rwc"
            self._db = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode={mode}",
                uri=True,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # transactions are explicit
                check_same_thread=False,
            )
        except sqlite3.Error as e:
            raise JournalError(f"{self.path}: cannot open the journal: {e}") from None
        try:
            self._setup()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise JournalError(f"{self.path}: not a readable journal: {e}") from None
        except JournalError:
            self._db.close()
            raise

    def _create(self) -> None:
        """A new journal is built beside its path and linked into place whole: a reader in another process never
        opens a file without its schema (it would be "not a workbench journal"); of two creators, one wins."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode = WAL")
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(stmt)
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (json.dumps(SCHEMA_VERSION),),
                )
            finally:
                db.close()  # the last connection: its WAL is checkpointed into the file and removed
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self.path)
        except sqlite3.Error as e:
            raise JournalError(f"{self.path}: cannot create the journal: {e}") from None
        finally:
            for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    def _setup(self) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if self.readonly:
            db.execute("PRAGMA query_only = ON")
        else:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{self.path}: cannot switch the journal to WAL mode (got {mode!r})")
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"meta", "journal"} <= tables:
            if self.readonly or tables - {"sqlite_sequence"}:
                raise JournalError(
                    f"{self.path}: not a workbench journal (tables: {sorted(tables) or 'none'})"
                )
            with self._write():
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(stmt)
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (json.dumps(SCHEMA_VERSION),),
                )
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            raise JournalError(f"{self.path}: not a workbench journal (no schema_version in meta)")
        version = json.loads(row[0])
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise JournalError(
                f"{self.path}: journal schema version {version!r} is newer than this workbench's "
                f"({SCHEMA_VERSION}); upgrade the workbench to read it"
            )

    # ------------------------------------------------------------------------------------------ low level

    class _Tx:
        def __init__(self, journal: Journal) -> None:
            self.j = journal

        def __enter__(self) -> sqlite3.Connection:
            self.j._lock.acquire()
            try:
                self.j._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.j._lock.release()
                raise
            return self.j._db

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            try:
                if exc_type is None:
                    self.j._db.execute("COMMIT")
                else:
                    self.j._db.execute("ROLLBACK")
            finally:
                self.j._lock.release()

    def _write(self) -> Journal._Tx:
        if self.readonly:
            raise JournalError(f"{self.path}: opened read-only")
        return Journal._Tx(self)

    def start_checkpointer(self, interval_s: float = 1.0) -> None:
        """Checkpoint the WAL every ``interval_s`` from a background thread (its own connection, ``PASSIVE``: it
        never blocks a writer or a reader) instead of inside the writer's commits. Stopped by :meth:`close`. A
        checkpoint that fails (a busy reader, a full disk) is tried again at the next interval; the rows are in
        the WAL meanwhile, committed and durable as ``synchronous`` says."""
        if self.readonly:
            raise JournalError(f"{self.path}: opened read-only")
        if self._checkpointer is not None:
            return
        with self._lock:
            self._db.execute("PRAGMA wal_autocheckpoint = 0")
        uri = f"{self.path.resolve().as_uri()}?mode=rw"
        stop = self._checkpointer_stop

        def run() -> None:
            try:
                db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            except sqlite3.Error:
                return
            try:
                db.execute(f"PRAGMA synchronous = {self.synchronous}")
                while not stop.wait(interval_s):
                    try:
                        busy, log, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    except sqlite3.Error:
                        continue
                    if not busy and log >= 0 and done == log:
                        self.checkpoints += 1
            finally:
                db.close()

        self._checkpointer = threading.Thread(target=run, name=f"checkpointer {self.path}", daemon=True)
        self._checkpointer.start()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer_stop.set()
            self._checkpointer.join(timeout=BUSY_TIMEOUT_MS / 1000)
            self._checkpointer = None
        with self._lock:
            self._db.close()
            if self._writer_lock is not None:
                self._writer_lock.close()  # releases the flock
                self._writer_lock = None

    def lock_writer(self) -> None:
        """Take the session's writer lock (``journal.sqlite.lock``, an exclusive ``flock``): one engine per
        journal. Raises :class:`JournalError` naming the holder's pid when another process has it. Released by
        :meth:`close` or when the process dies, SIGKILL included (the kernel drops the lock)."""
        import fcntl

        if self.readonly:
            raise JournalError(f"{self.path}: opened read-only")
        if self._writer_lock is not None:
            return
        f = open(self.path.with_name(self.path.name + ".lock"), "a+")  # noqa: SIM115 (held while open)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise JournalError(
                f"{self.path}: another process (pid {holder}) is running this session; stop it first"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._writer_lock = f

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _row(self, kind: str, data: Any, key: str | None, ts: int | None) -> tuple[int, str, str | None, str]:
        if kind not in KINDS:
            raise JournalError(f"{self.path}: unknown row kind {kind!r} (one of {', '.join(sorted(KINDS))})")
        what = f"{self.path}: {kind} row" + (f" {key}" if key else "")
        return (
            now_ms() if ts is None else int(ts),
            kind,
            None if key is None else str(key),
            _dumps(data, what),
        )

    def append(self, kind: str, data: Any, key: str | None = None, ts: int | None = None) -> int:
        """Append one row in its own committed transaction; returns its ``seq``."""
        return self._insert([self._row(kind, data, key, ts)])[0]

    def _insert(self, rows: list[tuple[int, str, str | None, str]]) -> list[int]:
        try:
            with self._write() as db:
                return [
                    int(
                        db.execute(
                            "INSERT INTO journal (ts, kind, key, data) VALUES (?, ?, ?, ?)", r
                        ).lastrowid
                    )
                    for r in rows
                ]
        except sqlite3.IntegrityError:
            dup = ", ".join(f"{r[1]} {r[2]}" for r in rows if r[1] in ("fill", "command", "ack"))
            raise JournalError(f"{self.path}: already recorded (one row per key): {dup}") from None

    def append_many(
        self, rows: Iterable[tuple[str, Any] | tuple[str, Any, str | None] | Sequence[Any]]
    ) -> list[int]:
        """Append ``(kind, data[, key[, ts]])`` rows in one transaction (all or none); returns their seqs."""
        prepared = [
            self._row(r[0], r[1], r[2] if len(r) > 2 else None, r[3] if len(r) > 3 else None) for r in rows
        ]
        return self._insert(prepared)

    def read(
        self, after_seq: int = 0, kinds: Iterable[str] | str | None = None, limit: int | None = None
    ) -> list[JournalRow]:
        """Rows with ``seq > after_seq`` in ``seq`` order (optionally only ``kinds``, at most ``limit``)."""
        sql = "SELECT seq, ts, kind, key, data FROM journal WHERE seq > ?"
        args: list[Any] = [int(after_seq)]
        if kinds is not None:
            ks = [kinds] if isinstance(kinds, str) else list(kinds)
            sql += f" AND kind IN ({','.join('?' * len(ks))})"
            args += ks
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [JournalRow(s, t, k, key, json.loads(d)) for s, t, k, key, d in rows]

    def last_seq(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0])

    def latest(self, kind: str, key: str | None = None) -> JournalRow | None:
        """The last row of ``kind`` (and ``key``), e.g. the risk state to restore after a restart."""
        sql = "SELECT seq, ts, kind, key, data FROM journal WHERE kind = ?"
        args: list[Any] = [kind]
        if key is not None:
            sql += " AND key = ?"
            args.append(key)
        with self._lock:
            row = self._db.execute(sql + " ORDER BY seq DESC LIMIT 1", args).fetchone()
        return None if row is None else JournalRow(row[0], row[1], row[2], row[3], json.loads(row[4]))

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # ------------------------------------------------------------------------------------------- meta

    def meta_get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def meta_set(self, key: str, value: Any) -> None:
        """Store a JSON value (credential-like keys redacted, e.g. in a config snapshot)."""
        if key == "schema_version":
            raise JournalError(f"{self.path}: schema_version is not set by hand")
        self.meta_set_many({key: value})

    def meta_set_many(self, items: Mapping[str, Any]) -> None:
        """:meth:`meta_set` for several keys in one transaction (all or none)."""
        if "schema_version" in items:
            raise JournalError(f"{self.path}: schema_version is not set by hand")
        rows = [(k, _dumps(v, f"{self.path}: meta {k}")) for k, v in items.items()]
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)

    # ----------------------------------------------------------------------------------- orders, fills

    def record_order(self, order: Order) -> int:
        return self.append(
            "order", order_to_dict(order), key=order.client_order_id, ts=order.updated_ms or None
        )

    def record_fill(self, fill: Fill, order: Order | None = None) -> bool:
        """Record ``fill`` once (and, in the same transaction, ``order`` as it stands after the fill).

        Returns ``False`` and writes nothing when the fill (by symbol and trade id) is already recorded."""
        rows = [self._row("fill", fill_to_dict(fill), fill_key(fill), fill.timestamp)]
        if order is not None:
            rows.append(
                self._row("order", order_to_dict(order), order.client_order_id, order.updated_ms or None)
            )
        try:
            self._insert(rows)
        except JournalError:
            if not self.has_fill(fill.symbol, fill.trade_id):
                raise
            return False
        return True

    def has_fill(self, symbol: str, trade_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM journal WHERE kind = 'fill' AND key = ?", (f"{symbol}|{trade_id}",)
            ).fetchone()
        return row is not None

    def orders(self) -> dict[str, Order]:
        """The latest state of every order, by client order id (in the order of their first row)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT j.key, j.data FROM journal j JOIN ("
                " SELECT key, MIN(seq) AS first, MAX(seq) AS last FROM journal WHERE kind = 'order' GROUP BY key"
                ") l ON j.seq = l.last ORDER BY l.first"
            ).fetchall()
        return {k: order_from_dict(json.loads(d)) for k, d in rows}

    def fills(self) -> list[Fill]:
        return [fill_from_dict(r.data) for r in self.read(kinds="fill")]

    def last_fill_ts(self) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT MAX(ts) FROM journal WHERE kind = 'fill'").fetchone()
        return None if row[0] is None else int(row[0])

    # ------------------------------------------------------------------------------- other row kinds

    def record_equity(self, ts: int, equity: float, **extra: Any) -> int:
        """An equity sample (``cash``, ``exposure``, ... in ``extra``)."""
        return self.append(*self.equity_row(ts, equity, **extra))

    @staticmethod
    def equity_row(ts: int, equity: float, **extra: Any) -> tuple[str, dict[str, Any], None, int]:
        """:meth:`record_equity`'s row, for :meth:`append_many` (several rows in one transaction)."""
        return ("equity", {"equity": float(equity), **extra}, None, ts)

    def record_risk(self, ts: int, event: str, reason: str, **extra: Any) -> int:
        """A risk event or refusal, with the reason that names the limit and the numbers."""
        return self.append("risk", {"event": event, "reason": reason, **extra}, key=event, ts=ts)

    def record_state(self, ts: int, state: str, reason: str = "", **extra: Any) -> int:
        """An engine or risk state change (ACTIVE / REDUCING / HALTED, started, stopped)."""
        return self.append("state", {"state": state, "reason": reason, **extra}, key=state, ts=ts)

    def record_position(
        self, ts: int, symbol: str, amount: float, tag: str | None = None, **extra: Any
    ) -> int:
        key = symbol if tag is None else f"{symbol}|{tag}"
        return self.append(
            "position", {"symbol": symbol, "tag": tag, "amount": amount, **extra}, key=key, ts=ts
        )

    def record_price(
        self, ts: int, symbol: str, last: float | None, bid: float | None = None, ask: float | None = None
    ) -> int:
        return self.append(
            "price", {"symbol": symbol, "last": last, "bid": bid, "ask": ask}, key=symbol, ts=ts
        )

    def record_book(
        self, ts: int, symbol: str, bids: Sequence[Sequence[float]], asks: Sequence[Sequence[float]]
    ) -> int:
        data = {"symbol": symbol, "bids": [list(b[:2]) for b in bids], "asks": [list(a[:2]) for a in asks]}
        return self.append("book", data, key=symbol, ts=ts)

    def record_candle(self, symbol: str, timeframe: str, candle: Sequence[float]) -> int:
        """A closed candle ``[ts, open, high, low, close, volume]``."""
        return self.append(*self.candle_row(symbol, timeframe, candle))

    @staticmethod
    def candle_row(
        symbol: str, timeframe: str, candle: Sequence[float]
    ) -> tuple[str, dict[str, Any], str, int]:
        """:meth:`record_candle`'s row, for :meth:`append_many`."""
        ts = int(candle[0])
        data = {"symbol": symbol, "timeframe": timeframe, "candle": [ts, *map(float, candle[1:6])]}
        return ("candle", data, f"{symbol}|{timeframe}", ts)

    def log(self, level: str, message: str, ts: int | None = None, **extra: Any) -> int:
        return self.append("log", {"level": level, "message": message, **extra}, key=level, ts=ts)

    # ----------------------------------------------------------------------------------------- commands

    def send_command(self, name: str, args: Mapping[str, Any] | None = None, source: str = "cli") -> str:
        """Queue a command for the engine; returns its id (wait for the answer with :meth:`wait_ack`)."""
        command_id = uuid.uuid4().hex
        data = {"id": command_id, "name": name, "args": dict(args or {}), "source": source}
        self.append("command", data, key=command_id)
        return command_id

    def pending_commands(self, after_seq: int = 0) -> list[JournalRow]:
        """Commands after ``after_seq`` not yet acknowledged, in the order they were sent."""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.seq, c.ts, c.kind, c.key, c.data FROM journal c WHERE c.kind = 'command' AND c.seq > ?"
                " AND NOT EXISTS (SELECT 1 FROM journal a WHERE a.kind = 'ack' AND a.key = c.key) ORDER BY c.seq",
                (int(after_seq),),
            ).fetchall()
        return [JournalRow(s, t, k, key, json.loads(d)) for s, t, k, key, d in rows]

    def ack(self, command_id: str, ok: bool, message: str = "", **extra: Any) -> int | None:
        """Answer a command; returns the ack's seq, or ``None`` when it was already answered."""
        with self._lock:
            known = self._db.execute(
                "SELECT 1 FROM journal WHERE kind = 'command' AND key = ?", (command_id,)
            ).fetchone()
        if known is None:
            raise JournalError(f"{self.path}: no command {command_id!r} to acknowledge")
        if self.get_ack(command_id) is not None:
            return None
        try:
            return self.append(
                "ack", {"id": command_id, "ok": bool(ok), "message": message, **extra}, key=command_id
            )
        except JournalError:
            if self.get_ack(command_id) is None:
                raise
            return None  # answered by another process meanwhile

    def get_ack(self, command_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM journal WHERE kind = 'ack' AND key = ?", (command_id,)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def wait_ack(self, command_id: str, timeout_s: float, poll_s: float = 0.05) -> dict[str, Any] | None:
        """The command's acknowledgement, waiting up to ``timeout_s``; ``None`` if none came in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = self.get_ack(command_id)
            if got is not None or time.monotonic() >= deadline:
                return got
            time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))

    async def wait_ack_async(
        self, command_id: str, timeout_s: float, poll_s: float = 0.05
    ) -> dict[str, Any] | None:
        """:meth:`wait_ack` for an event loop (a dashboard's kernel): waits without blocking it."""
        import asyncio

        deadline = time.monotonic() + timeout_s
        while True:
            got = self.get_ack(command_id)
            if got is not None or time.monotonic() >= deadline:
                return got
            await asyncio.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))

    # ------------------------------------------------------------------------------------------- export

    def export(self) -> dict[str, Any]:
        """The session as one JSON object (``workbench journal export``): ``orders`` (latest state),
        ``fills`` (``timestamp`` in ms), ``risk_events``, ``equity`` (``timestamp`` in ms, ``equity``),
        ``positions`` (symbol -> signed base amount held, from the fills, base fees kept back) and ``brackets``
        (the latest state of each symbol's manual stop-loss / take-profit, ``timestamp`` in ms of its last
        change, ``status`` pending / armed / triggered / canceled)."""
        orders = [order_to_dict(o) for o in self.orders().values()]
        fills = self.fills()
        positions: dict[str, float] = {}
        for f in fills:
            positions[f.symbol] = positions.get(f.symbol, 0.0) + held_change(f)
        positions = {s: (0.0 if math.isclose(a, 0.0, abs_tol=1e-12) else a) for s, a in positions.items()}
        risk = [{"seq": r.seq, "timestamp": r.ts, **r.data} for r in self.read(kinds="risk")]
        equity = [{"timestamp": r.ts, **r.data} for r in self.read(kinds="equity")]
        brackets: dict[str, dict[str, Any]] = {}
        for r in self.read(kinds="bracket"):  # the latest row per symbol is its state
            brackets[str(r.key)] = {"timestamp": r.ts, **r.data}
        return {
            "orders": orders,
            "fills": [fill_to_dict(f) for f in fills],
            "risk_events": risk,
            "equity": equity,
            "positions": positions,
            "brackets": list(brackets.values()),
        }
