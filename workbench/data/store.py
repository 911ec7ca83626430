"""The market-data store: Parquet parts behind an atomically swapped manifest, queried through DuckDB.

Why not one DuckDB database file? A DuckDB file opened for writing locks out every other process, readers
included, and the workbench always has several processes on the data at once (a collector, the trading
engine, notebooks, dashboard kernels). So each series (``kind/exchange/symbol[/timeframe]``) is a folder:

    manifest.json      the current snapshot: which part files make up the series (replaced atomically)
    parts/*.parquet    immutable files, one per period (day, month or year), never rewritten in place
    .lock              writers of the series serialise on an flock of this file; readers take no lock

A write reads the affected parts, merges the new rows in (new rows win on equal keys, so upserts are
idempotent), writes new part files under fresh names, then swaps the manifest with ``os.replace``. A reader
reads the manifest once and then only the files it lists, so it sees one whole snapshot: never a torn or
partial write, never a lock error. Replaced files are deleted only ``gc_grace_s`` after they left the
manifest, so a reader that still holds an old snapshot can finish; a reader that loses that race retries on
the new manifest. A writer killed at any point leaves the previous snapshot intact (its stray files are
collected later).

Integrity: the manifest records each part's size and CRC-32. A process verifies a part the first time it reads
it (the bytes are read once, checked, and decoded from memory; later reads only ``stat`` it), and also checks the
footer's row count, schema and ``ts`` bounds against the manifest, so a flipped byte, a truncated or swapped part
raises :class:`StoreCorruptError` naming the series and the file instead of returning changed data. Parts written
before checksums existed (manifest schema 1) are read with the footer checks only and a one-time warning;
:meth:`Store.verify` (``workbench data verify [--fix]``) scrubs every part and adds their checksums. A write that
fails (a full disk) removes the files it wrote and raises a :class:`StoreError` naming the series; the previous
snapshot stays readable.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.types import CANDLE_COLUMNS, DataKey, Timeframe, ms_to_iso, to_ms, validate_candles

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "TS_MAX_MS",
    "TS_MIN_MS",
    "Kind",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "VerifyReport",
    "WriteResult",
    "merge_intervals",
    "subtract_intervals",
]

log = logging.getLogger(__name__)

# 2: every part written carries "bytes" and "checksum" (CRC-32 of the file) in its manifest entry.
# 1: no checksums (read with footer checks only; `workbench data verify --fix` adds them).
SCHEMA_VERSION: Final = 2
MANIFEST: Final = "manifest.json"
STORE_META: Final = "store.json"
# stored timestamps are UTC epoch milliseconds within [1990-01-01, 2100-01-01): a value outside is a unit error
TS_MIN_MS: Final = 631_152_000_000
TS_MAX_MS: Final = 4_102_444_800_000
_CHECKSUM_RE: Final = re.compile(r"crc32:[0-9a-f]{8}")


class StoreError(RuntimeError):
    """A store problem; the message names the series or the file."""


class StoreCorruptError(StoreError):
    """A part or manifest whose bytes or contents disagree with what was committed; nothing was returned."""


def _checksum(data: bytes | memoryview | pa.Buffer) -> str:
    return f"crc32:{zlib.crc32(data):08x}"


@dataclass(frozen=True)
class Kind:
    """What one kind of series holds: its Arrow schema, its key columns and how it is partitioned."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    period: str  # 'D' day, 'M' month, 'Y' year; candles choose by timeframe
    has_timeframe: bool = False

    def period_for(self, timeframe: str | None) -> str:
        if self.name == "candles" and timeframe is not None:
            tf = Timeframe.parse(timeframe)
            return "M" if tf.ms < 3_600_000 else "Y"
        return self.period


_F64 = pa.float64()
KINDS: Final[dict[str, Kind]] = {
    k.name: k
    for k in (
        Kind(
            "candles",
            pa.schema([("ts", pa.int64()), *[(c, _F64) for c in CANDLE_COLUMNS]]),
            ("ts",),
            "M",
            has_timeframe=True,
        ),
        Kind(
            "trades",
            pa.schema(
                [
                    ("ts", pa.int64()),
                    ("id", pa.string()),
                    ("price", _F64),
                    ("amount", _F64),
                    ("side", pa.string()),
                ]
            ),
            ("id",),
            "D",
        ),
        Kind(
            "orderbook",
            pa.schema(
                [
                    ("ts", pa.int64()),
                    ("side", pa.string()),
                    ("level", pa.int32()),
                    ("price", _F64),
                    ("amount", _F64),
                ]
            ),
            ("ts", "side", "level"),
            "D",
        ),
        Kind(
            "tickers",
            pa.schema(
                [
                    ("ts", pa.int64()),
                    ("bid", _F64),
                    ("ask", _F64),
                    ("last", _F64),
                    ("base_volume", _F64),
                    ("quote_volume", _F64),
                ]
            ),
            ("ts",),
            "M",
        ),
        Kind(
            "funding",
            pa.schema([("ts", pa.int64()), ("rate", _F64), ("mark_price", _F64)]),
            ("ts",),
            "Y",
        ),
    )
}


@dataclass(frozen=True)
class WriteResult:
    key: DataKey
    rows_in: int
    rows_added: int
    rows_updated: int
    parts_written: int
    version: int


@dataclass
class VerifyReport:
    """What :meth:`Store.verify` checked and found. ``problems``: dicts with ``series``, ``file``, ``problem``."""

    series: int = 0
    parts: int = 0
    bytes: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    unverified: int = 0  # parts without a checksum (schema 1) left as they are
    fixed: int = 0  # parts given a checksum by --fix
    dropped: int = 0  # damaged parts moved out of their series by --drop-damaged

    @property
    def ok(self) -> bool:
        return not self.problems


# ------------------------------------------------------------------------------------------ helpers


def symbol_dirname(symbol: str) -> str:
    """A file-system safe, readable folder name for a ccxt unified symbol (``BTC/USDT:USDT`` -> ``BTC-USDT_USDT``)."""
    out = symbol.replace("/", "-").replace(":", "_")
    if not out or any(c in out for c in "\\\0") or out in (".", ".."):
        raise StoreError(f"symbol {symbol!r} cannot be stored")
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _write_synced(tmp: Path, data: bytes | memoryview | pa.Buffer) -> None:
    """Write ``data`` to a new file and fsync it; on any error the file is removed."""
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_write_bytes(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Replace ``path`` by ``data`` atomically: temp file, fsync, rename, fsync of the folder. A reader sees the
    old or the new content, never a mix; on an error before the rename nothing is left behind."""
    tmp = _tmp_name(path)
    _write_synced(tmp, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        _fsync_dir(path.parent)


def _os_reason(e: OSError) -> str:
    """An OSError as a short reason ("No space left on device"), with a hint where one helps."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (the disk or quota is full: free space and retry)"
    return reason


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _manifest_problem(m: object) -> str | None:
    """What is wrong with a parsed manifest, or None. Checks what readers and writers rely on."""
    if not isinstance(m, dict):
        return f"expected a JSON object, found {type(m).__name__}"
    if not _is_int(m.get("schema_version")) or m["schema_version"] < 1:
        return "no valid 'schema_version'"
    for k in ("kind", "exchange", "symbol"):
        if not isinstance(m.get(k), str) or not m[k]:
            return f"no valid {k!r}"
    if m["kind"] not in KINDS:
        return f"unknown kind {m['kind']!r}"
    if KINDS[m["kind"]].has_timeframe and not isinstance(m.get("timeframe"), str):
        return "no valid 'timeframe'"
    if not _is_int(m.get("version")) or m["version"] < 0:
        return "no valid 'version'"
    parts = m.get("parts")
    if not isinstance(parts, list):
        return "no 'parts' list"
    seen: set[str] = set()
    for i, p in enumerate(parts):
        if not isinstance(p, dict):
            return f"parts[{i}] is not an object"
        f = p.get("file")
        if not isinstance(f, str) or not f.endswith(".parquet") or "/" in f or "\\" in f or f.startswith("."):
            return f"parts[{i}]: no valid 'file'"
        if f in seen:
            return f"parts[{i}]: {f} is listed twice"
        seen.add(f)
        if not isinstance(p.get("period"), str):
            return f"parts[{i}] ({f}): no valid 'period'"
        for k in ("rows", "min_ts", "max_ts"):
            if not _is_int(p.get(k)):
                return f"parts[{i}] ({f}): no valid {k!r}"
        if p["rows"] < 1 or p["min_ts"] > p["max_ts"]:
            return f"parts[{i}] ({f}): rows {p['rows']}, min_ts {p['min_ts']} > max_ts {p['max_ts']}"
        if "checksum" in p and not (isinstance(p["checksum"], str) and _CHECKSUM_RE.fullmatch(p["checksum"])):
            return f"parts[{i}] ({f}): invalid checksum {str(p['checksum'])[:40]!r}"
        if "bytes" in p and (not _is_int(p["bytes"]) or p["bytes"] < 1):
            return f"parts[{i}] ({f}): invalid 'bytes'"
    cov = m.get("coverage", [])
    if not isinstance(cov, list) or not all(
        isinstance(iv, list) and len(iv) == 2 and all(_is_int(x) for x in iv) for iv in cov
    ):
        return "invalid 'coverage'"
    ret = m.get("retired", [])
    if not isinstance(ret, list) or not all(
        isinstance(r, dict) and isinstance(r.get("file"), str) and isinstance(r.get("since"), int | float)
        for r in ret
    ):
        return "invalid 'retired'"
    return None


# parts this process has verified: (path, size, mtime_ns, checksum, rows, min_ts, max_ts); shared by all Store
# objects (load_candles opens a new one per call), so a part is verified once per process
_VERIFIED: set[tuple[Any, ...]] = set()
_VERIFIED_LOCK = threading.Lock()
_VERIFIED_MAX: Final = 100_000
_WARNED_UNCHECKED: set[str] = set()


def _part_problem(part: dict[str, Any], kind: Kind, data: bytes) -> str | None:
    """What is wrong with a part's bytes against its manifest entry, or None."""
    if part["min_ts"] < TS_MIN_MS or part["max_ts"] >= TS_MAX_MS:
        return (
            f"its times {part['min_ts']}..{part['max_ts']} are not epoch milliseconds in 1990..2100 "
            "(stored in another unit by an older workbench)"
        )
    if "bytes" in part and len(data) != part["bytes"]:
        return f"{len(data)} bytes on disk, the manifest lists {part['bytes']} (truncated or replaced)"
    if "checksum" in part:
        got = _checksum(data)
        if got != part["checksum"]:
            return (
                f"checksum {got} does not match the manifest's {part['checksum']} (the file changed on disk)"
            )
    try:
        md = pq.read_metadata(pa.BufferReader(data))
        schema = md.schema.to_arrow_schema()
    except (pa.ArrowException, OSError, ValueError) as e:
        return f"not a readable Parquet file ({str(e)[:200]})"
    if schema.names != kind.schema.names or not all(
        schema.field(n).type.equals(kind.schema.field(n).type) for n in kind.schema.names
    ):
        return f"its columns ({schema}) are not the {kind.name} schema".replace("\n", ", ")
    if md.num_rows != part["rows"]:
        return f"it holds {md.num_rows} rows, the manifest lists {part['rows']}"
    i = schema.names.index("ts")
    lo = hi = None
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(i).statistics
        if st is None or not st.has_min_max:
            lo = hi = None
            break
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    if lo is not None and (lo, hi) != (part["min_ts"], part["max_ts"]):
        return f"its ts range {lo}..{hi} is not the manifest's {part['min_ts']}..{part['max_ts']}"
    return None


def _decoded_problem(part: dict[str, Any], kind: Kind, data: bytes) -> str | None:
    """Decode a whole part (the scrub's deeper check): rows, exact ts bounds, sorted by time."""
    try:
        t = pq.read_table(pa.BufferReader(data), schema=kind.schema)
    except (pa.ArrowException, OSError, ValueError) as e:
        return f"cannot be decoded ({str(e)[:200]})"
    ts = t.column("ts").to_numpy()
    if len(ts) != part["rows"]:
        return f"it decodes to {len(ts)} rows, the manifest lists {part['rows']}"
    if len(ts) and (int(ts.min()), int(ts.max())) != (part["min_ts"], part["max_ts"]):
        return f"its ts range {ts.min()}..{ts.max()} is not the manifest's {part['min_ts']}..{part['max_ts']}"
    if np.any(np.diff(ts) < 0):
        return "its rows are not sorted by time"
    return None


def _check_ts_range(table: pa.Table, source: str) -> None:
    """Stored times are epoch milliseconds in [1990, 2100): anything else is a unit mix-up, refused by row."""
    if not table.num_rows:
        return
    ts = table.column("ts").to_numpy()
    bad = np.flatnonzero((ts < TS_MIN_MS) | (ts >= TS_MAX_MS))
    if not bad.size:
        return
    v = int(ts[bad[0]])
    hint = _unit_hint(v)
    raise StoreError(
        f"{source}: row {bad[0] + 1}: ts {v} is not a time in 1990-01-01..2100-01-01 as epoch milliseconds"
        + (f" (it looks like epoch {hint})" if hint else "")
    )


def _unit_hint(v: int) -> str | None:
    """The epoch unit in which ``v`` would be a time in [1990, 2100), if any (besides milliseconds)."""
    for unit, scale in (("seconds", 1e-3), ("microseconds", 1e3), ("nanoseconds", 1e6)):
        if TS_MIN_MS * scale <= v < TS_MAX_MS * scale:
            return unit
    return None


def _period_bounds(label: str, period: str) -> tuple[int, int]:
    """``[start_ms, end_ms)`` of a part's period label (``2024``, ``2024-01``, ``2024-01-05``)."""
    unit = {"D": "D", "M": "M", "Y": "Y"}[period]
    start = np.datetime64(label, unit)
    return int(start.astype("datetime64[ms]").astype("int64")), int(
        (start + 1).astype("datetime64[ms]").astype("int64")
    )


def _period_codes(ts: np.ndarray, period: str) -> np.ndarray:
    unit = {"D": "D", "M": "M", "Y": "Y"}[period]
    return ts.astype("datetime64[ms]").astype(f"datetime64[{unit}]").astype("int64")


def _period_label(code: int, period: str) -> str:
    unit = {"D": "D", "M": "M", "Y": "Y"}[period]
    return str(np.datetime64(int(code), unit))


def merge_intervals(intervals: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of half-open ``[start, end)`` intervals, sorted; touching intervals merge."""
    out: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in intervals if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def subtract_intervals(want: tuple[int, int], have: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` not covered by ``have``."""
    start, end = want
    missing: list[tuple[int, int]] = []
    cursor = start
    for a, b in merge_intervals(have):
        if b <= cursor or a >= end:
            continue
        if a > cursor:
            missing.append((cursor, min(a, end)))
        cursor = max(cursor, b)
        if cursor >= end:
            break
    if cursor < end:
        missing.append((cursor, end))
    return missing


def _dedup_sorted(table: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """Sort by key and keep the LAST row of each key (later rows win). Stable for equal keys."""
    n = table.num_rows
    if n == 0:
        return table
    if key == ("ts",):
        ts = table.column("ts").to_numpy()
        order = np.argsort(ts, kind="stable")
        ts_sorted = ts[order]
        keep = np.ones(n, dtype=bool)
        keep[:-1] = ts_sorted[:-1] != ts_sorted[1:]
        idx = order[keep]
        if idx.size == n and np.array_equal(idx, np.arange(n)):
            return table
        return table.take(pa.array(idx))
    df = table.to_pandas()
    df["__pos"] = np.arange(n)
    df = df.drop_duplicates(subset=list(key), keep="last")
    sort_cols = ["ts", *[k for k in key if k != "ts"]] if "ts" in df.columns else list(key)
    df = df.sort_values([*sort_cols, "__pos"], kind="stable")
    return table.take(pa.array(df["__pos"].to_numpy()))


# ------------------------------------------------------------------------------------------ the store


class Store:
    """The market-data store in a data folder. Safe to use from many processes at once.

    >>> store = Store("data")
    >>> store.candles("binance", "BTC/USDT", "1h", start="2024-03-01", end="2024-04-01")
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        gc_grace_s: float = 120.0,
        duckdb_threads: int = 2,
        compression: str = "zstd",
        create: bool = True,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.market = self.root / "market"
        self.gc_grace_s = gc_grace_s
        self.compression = None if compression == "none" else compression
        self._duckdb_threads = duckdb_threads
        self._con: duckdb.DuckDBPyConnection | None = None
        self._con_lock = threading.Lock()
        self.schema_version: int = SCHEMA_VERSION  # of store.json, set by the check below
        self._check_or_create(create)

    @classmethod
    def from_settings(cls, settings: Any) -> Store:
        return cls(
            settings.data_dir,
            gc_grace_s=settings.store.gc_grace_s,
            duckdb_threads=settings.store.duckdb_threads,
            compression=settings.store.compression,
        )

    # ---------------------------------------------------------------- layout
    def _check_or_create(self, create: bool) -> None:
        meta = self.root / STORE_META
        try:
            raw = meta.read_bytes()
        except FileNotFoundError:
            raw = None
        except OSError as e:
            raise StoreError(f"{meta}: cannot read the store description: {_os_reason(e)}") from e
        if raw == b"" and create:
            # Only an interrupted `init` of an older workbench (create, then write) leaves an empty store.json;
            # this version never shows a partial one (below), so an empty file is stale: write it again.
            log.warning("%s: empty store description (an interrupted init); writing it again", meta)
            self._write_meta(meta, replace=True)
            return
        if raw is not None:
            try:
                info = json.loads(raw)
                version = int(info["schema_version"])
            except (ValueError, KeyError, TypeError) as e:
                raise StoreError(f"{meta}: not a workbench store description ({e})") from e
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{meta}: store schema version {version} is newer than this workbench supports "
                    f"({SCHEMA_VERSION}); upgrade workbench"
                )
            self.schema_version = version
            return
        if not create:
            raise StoreError(f"{self.root}: no workbench store here (run `workbench init`)")
        self._write_meta(meta, replace=False)

    def _write_meta(self, meta: Path, *, replace: bool) -> None:
        """Publish store.json whole: written and fsynced under a temp name, then linked into place (the first
        of several concurrent creators wins; the others find the complete file) or, to repair, renamed."""
        data = json.dumps({"schema_version": SCHEMA_VERSION, "format": "workbench-store"}).encode()
        tmp = _tmp_name(meta)
        lost = False
        try:
            self.market.mkdir(parents=True, exist_ok=True)
            _write_synced(tmp, data)
            if replace:
                os.replace(tmp, meta)
            else:
                try:
                    os.link(tmp, meta)
                except FileExistsError:
                    lost = True  # another process created it first, whole: check what it wrote
                except OSError as e:
                    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                        raise
                    os.replace(tmp, meta)  # no hard links here: same content, atomic rename
            _fsync_dir(self.root)
        except OSError as e:
            raise StoreError(f"{meta}: cannot create the store description: {_os_reason(e)}") from e
        finally:
            tmp.unlink(missing_ok=True)
        if lost:
            self._check_or_create(create=False)
        else:
            self.schema_version = SCHEMA_VERSION

    def series_dir(self, key: DataKey) -> Path:
        kind = self._kind(key.kind)
        d = self.market / kind.name / key.exchange / symbol_dirname(key.symbol)
        if kind.has_timeframe:
            if not key.timeframe:
                raise StoreError(f"{key}: a timeframe is required for {kind.name}")
            d = d / Timeframe.parse(key.timeframe).value
        return d

    @staticmethod
    def _kind(name: str) -> Kind:
        try:
            return KINDS[name]
        except KeyError:
            raise StoreError(f"unknown data kind {name!r}; known: {', '.join(KINDS)}") from None

    @staticmethod
    def key(kind: str, exchange: str, symbol: str, timeframe: str | None = None) -> DataKey:
        if kind == "candles":
            if timeframe is None:
                raise StoreError(f"candles {exchange} {symbol}: a timeframe is required")
            timeframe = Timeframe.parse(timeframe).value
        return DataKey(kind, exchange, symbol, timeframe)

    # ---------------------------------------------------------------- manifest
    def _read_manifest(self, d: Path) -> dict[str, Any] | None:
        """The series' manifest, checked; None when the series does not exist. A manifest that cannot be read,
        is truncated or lacks what a snapshot needs is a :class:`StoreCorruptError` naming the file."""
        path = d / MANIFEST
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"{path}: cannot read the manifest: {_os_reason(e)}") from e
        try:
            m = json.loads(raw)
        except ValueError as e:
            what = "empty" if not raw.strip() else f"not valid JSON ({e})"
            raise StoreCorruptError(f"{path}: corrupt manifest: {what}") from e
        problem = _manifest_problem(m)
        if problem:
            raise StoreCorruptError(f"{path}: corrupt manifest: {problem}")
        if m["schema_version"] > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: schema version {m['schema_version']} is newer than this workbench supports "
                f"({SCHEMA_VERSION}); upgrade workbench"
            )
        return m

    def manifest(self, key: DataKey) -> dict[str, Any] | None:
        return self._read_manifest(self.series_dir(key))

    def coverage(self, key: DataKey) -> list[tuple[int, int]]:
        """Intervals ``[start_ms, end_ms)`` that were collected or imported whole."""
        m = self.manifest(key)
        return [tuple(iv) for iv in m.get("coverage", [])] if m else []  # type: ignore[misc]

    def bounds(self, key: DataKey) -> tuple[int, int, int] | None:
        """``(first_ts, last_ts, rows)`` of a series from its manifest, or None when empty."""
        m = self.manifest(key)
        if not m or not m["parts"]:
            return None
        first, last = min(p["min_ts"] for p in m["parts"]), max(p["max_ts"] for p in m["parts"])
        if first < TS_MIN_MS or last >= TS_MAX_MS:
            raise StoreCorruptError(
                f"{self.series_dir(key) / MANIFEST}: {key} holds times {first}..{last}, not epoch milliseconds in "
                "1990..2100 (stored in another unit by an older workbench); run `workbench data verify "
                "--drop-damaged` and import the data again"
            )
        return first, last, sum(p["rows"] for p in m["parts"])

    @contextlib.contextmanager
    def _writer_lock(self, d: Path) -> Iterator[None]:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ---------------------------------------------------------------- writing
    def write(
        self,
        key: DataKey,
        data: pa.Table | pd.DataFrame,
        *,
        source: str | None = None,
        coverage: tuple[int, int] | None = None,
    ) -> WriteResult:
        """Upsert rows into a series. New rows replace stored rows with the same key. All or nothing.

        ``data`` has the kind's columns (for candles: ``ts`` int64 ms bar-open time and float64 OHLCV).
        Candles are validated first; a bad row raises before anything is written.
        ``coverage`` = ``(start_ms, end_ms)`` records that the source was asked for that whole interval
        (so a gap inside it is the source's, not ours); it is saved in the same atomic commit as the rows,
        which is what lets an interrupted collection resume exactly where its last commit ended.
        """
        kind = self._kind(key.kind)
        table = self._coerce(kind, data, source or str(key))
        _check_ts_range(table, source or str(key))
        if kind.name == "candles":
            ts = table.column("ts").to_numpy()
            validate_candles(
                ts,
                {c: table.column(c).to_numpy() for c in CANDLE_COLUMNS},
                timeframe=Timeframe.parse(key.timeframe or ""),
                source=source or str(key),
                check_order=False,
            )
        d = self.series_dir(key)
        try:
            with self._writer_lock(d):
                return self._write_locked(key, kind, d, table, coverage)
        except OSError as e:  # the lock file or the series folder could not be created
            raise StoreError(f"{key}: cannot write to {d}: {_os_reason(e)}; nothing was committed") from e

    def _write_locked(
        self, key: DataKey, kind: Kind, d: Path, table: pa.Table, coverage: tuple[int, int] | None
    ) -> WriteResult:
        period = kind.period_for(key.timeframe)
        manifest = self._read_manifest(d) or {
            "schema_version": SCHEMA_VERSION,
            "kind": key.kind,
            "exchange": key.exchange,
            "symbol": key.symbol,
            "timeframe": key.timeframe,
            "period": period,
            "version": 0,
            "parts": [],
            "retired": [],
        }
        if (manifest["kind"], manifest["exchange"], manifest["symbol"], manifest.get("timeframe")) != (
            key.kind,
            key.exchange,
            key.symbol,
            key.timeframe,
        ):
            raise StoreError(
                f"{d}: folder holds {manifest['symbol']!r}, not {key.symbol!r} (symbol names collide)"
            )
        version = int(manifest["version"]) + 1
        parts = {p["period"]: p for p in manifest["parts"]}
        new_parts: dict[str, dict[str, Any]] = {}
        retired: list[dict[str, Any]] = list(manifest.get("retired", []))
        added = updated = 0
        written: list[Path] = []  # part files of this commit: removed again if it fails
        step = f"create {d / 'parts'}"
        try:
            (d / "parts").mkdir(exist_ok=True)
            if table.num_rows:
                ts = table.column("ts").to_numpy()
                order = np.argsort(ts, kind="stable")
                if not np.array_equal(order, np.arange(len(order))):
                    table = table.take(pa.array(order))
                    ts = ts[order]
                codes = _period_codes(ts, period)
                cuts = np.flatnonzero(np.diff(codes)) + 1
                starts = np.concatenate([[0], cuts])
                ends = np.concatenate([cuts, [len(codes)]])
                for s, e in zip(starts, ends, strict=True):
                    label = _period_label(int(codes[s]), period)
                    chunk = table.slice(int(s), int(e - s))
                    old = parts.get(label)
                    if old is not None:
                        step = f"read part {old['file']}"
                        # verified like any read: a damaged part is never merged into a new, checksummed one
                        old_table = self._read_part(key, d, old, kind)
                        merged = _dedup_sorted(pa.concat_tables([old_table, chunk]), kind.key)
                        if merged.equals(old_table):
                            continue
                        n_new = merged.num_rows - old_table.num_rows
                        added += n_new
                        updated += max(0, chunk.num_rows - n_new)
                    else:
                        merged = _dedup_sorted(chunk, kind.key)
                        added += merged.num_rows
                    fname = f"{label}.{version:08d}.parquet"
                    step = f"write part {fname}"
                    written.append(d / "parts" / fname)
                    nbytes, checksum = self._write_part(d / "parts" / fname, merged)
                    new_parts[label] = self._part_entry(label, fname, merged, nbytes, checksum)
                    if old is not None:
                        retired.append({"file": old["file"], "since": time.time()})
            old_coverage = [tuple(iv) for iv in manifest.get("coverage", [])]
            new_coverage = merge_intervals([*old_coverage, coverage]) if coverage else old_coverage
            if not new_parts and new_coverage == old_coverage:
                self._gc_after_commit(key, d, manifest)
                return WriteResult(key, table.num_rows, 0, 0, 0, int(manifest["version"]))
            parts.update(new_parts)
            manifest = {
                **manifest,
                "schema_version": SCHEMA_VERSION,
                "coverage": [list(iv) for iv in new_coverage],
                "version": version,
                "updated": ms_to_iso(int(time.time() * 1000)),
                "parts": [parts[p] for p in sorted(parts)],
                "retired": retired,
            }
            if written:
                step = f"sync {d / 'parts'}"
                _fsync_dir(d / "parts")  # the parts are durable before the manifest that publishes them
            step = f"write {d / MANIFEST}"
            _atomic_write_bytes(d / MANIFEST, json.dumps(manifest, indent=1).encode(), sync_dir=False)
            step = f"sync {d}"
            _fsync_dir(d)
        except BaseException as e:
            committed = self._discard_unpublished(d, written, version)
            if not isinstance(e, OSError):
                raise
            if committed:
                raise StoreError(
                    f"{key}: version {version} was committed, but {step} failed: {_os_reason(e)}; "
                    "it may not survive a crash (a retry of the same write is harmless)"
                ) from e
            raise StoreError(
                f"{key}: cannot {step}: {_os_reason(e)}; nothing was committed, the series is unchanged"
            ) from e
        self._gc_after_commit(key, d, manifest)
        return WriteResult(key, table.num_rows, added, updated, len(new_parts), version)

    def _discard_unpublished(self, d: Path, written: list[Path], version: int) -> bool:
        """After a failed commit: delete this commit's part files unless the manifest on disk lists them (the
        rename went through before the error). Returns whether the manifest on disk is this commit."""
        try:
            m = self._read_manifest(d)
        except StoreError:
            return False  # cannot tell what is published: keep the files (collected later as strays)
        live = {p["file"] for p in m["parts"]} if m else set()
        for path in written:
            if path.name not in live:
                with contextlib.suppress(OSError):
                    path.unlink()
        return bool(m) and int(m["version"]) == version

    def _gc_after_commit(self, key: DataKey, d: Path, manifest: dict[str, Any]) -> None:
        """Collection is housekeeping: the commit stands even when it fails (it is retried on the next write)."""
        try:
            self._gc(d, manifest)
        except OSError as e:
            log.warning("%s: could not collect old part files: %s", key, _os_reason(e))

    def _coerce(self, kind: Kind, data: pa.Table | pd.DataFrame, source: str) -> pa.Table:
        if isinstance(data, pd.DataFrame):
            df = data
            if "ts" not in df.columns and isinstance(df.index, pd.DatetimeIndex):
                idx = df.index if df.index.tz is None else df.index.tz_convert("UTC").tz_localize(None)
                df = df.reset_index(drop=True).assign(ts=idx.as_unit("ms").asi8)
            missing = [f.name for f in kind.schema if f.name not in df.columns]
            if missing:
                raise StoreError(f"{source}: missing column(s) {missing} for {kind.name}")
            try:
                return pa.Table.from_pandas(df[kind.schema.names], schema=kind.schema, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
                raise StoreError(f"{source}: cannot convert to the {kind.name} schema: {e}") from e
        missing = [n for n in kind.schema.names if n not in data.column_names]
        if missing:
            raise StoreError(f"{source}: missing column(s) {missing} for {kind.name}")
        try:
            return data.select(kind.schema.names).cast(kind.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise StoreError(f"{source}: cannot convert to the {kind.name} schema: {e}") from e

    def _write_part(self, path: Path, table: pa.Table) -> tuple[int, str]:
        """Write an immutable part: encode in memory (to checksum exactly the bytes written), write a temp
        file, fsync, rename. Returns its size and checksum. On an error nothing is left behind."""
        sink = pa.BufferOutputStream()
        pq.write_table(
            table,
            sink,
            compression=self.compression or "none",
            use_dictionary=[f.name for f in table.schema if pa.types.is_string(f.type)],
            write_statistics=True,
        )
        buf = sink.getvalue()
        checksum = _checksum(buf)
        tmp = _tmp_name(path)
        _write_synced(tmp, buf)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return buf.size, checksum

    @staticmethod
    def _part_entry(label: str, fname: str, table: pa.Table, nbytes: int, checksum: str) -> dict[str, Any]:
        ts = table.column("ts")
        return {
            "period": label,
            "file": fname,
            "rows": table.num_rows,
            "min_ts": int(pa.compute.min(ts).as_py()),
            "max_ts": int(pa.compute.max(ts).as_py()),
            "bytes": nbytes,
            "checksum": checksum,
        }

    def _read_part(self, key: DataKey, d: Path, part: dict[str, Any], kind: Kind) -> pa.Table:
        return pq.read_table(self._part_source(key, d, part, kind), schema=kind.schema)

    # ---------------------------------------------------------------- integrity
    def _part_source(self, key: DataKey, d: Path, part: dict[str, Any], kind: Kind) -> str | pa.BufferReader:
        """Where to read a listed part from, verified. The first time this process meets the part (same path,
        size, mtime and manifest entry), its bytes are read, checked against the manifest and returned as a
        buffer to decode, so what is decoded is what was checked; afterwards the path (one ``stat``).
        A missing file raises FileNotFoundError (the retry loops treat it as a newer snapshot)."""
        path = d / "parts" / part["file"]
        st = path.stat()
        token = (
            str(path),
            st.st_size,
            st.st_mtime_ns,
            part.get("checksum"),
            part["rows"],
            part["min_ts"],
            part["max_ts"],
        )
        if token in _VERIFIED:
            return str(path)
        data = path.read_bytes()
        self._check_part(key, path, part, kind, data)
        with _VERIFIED_LOCK:
            if len(_VERIFIED) >= _VERIFIED_MAX:  # a long-lived writer meets many part versions: start over
                _VERIFIED.clear()
            _VERIFIED.add(token)
        return pa.BufferReader(data)

    def _check_part(self, key: DataKey, path: Path, part: dict[str, Any], kind: Kind, data: bytes) -> None:
        """Raise :class:`StoreCorruptError` unless ``data`` is the part the manifest lists: its size and
        checksum (schema 2), and from the Parquet footer its schema, row count and ``ts`` bounds."""
        problem = _part_problem(part, kind, data)
        if problem:
            raise StoreCorruptError(
                f"{key}: part {path} is corrupt: {problem}; nothing was read from it. "
                "Restore the file, or run `workbench data verify --drop-damaged` and collect or import the "
                "period again (`workbench data verify` lists every damaged part)"
            )
        if "checksum" not in part and str(path.parent.parent) not in _WARNED_UNCHECKED:
            _WARNED_UNCHECKED.add(str(path.parent.parent))
            log.warning(
                "%s: parts written by an older workbench have no checksum and are read unverified; "
                "run `workbench data verify --fix` to check them and add checksums",
                key,
            )

    def _gc(self, d: Path, manifest: dict[str, Any]) -> None:
        """Delete retired part files older than the grace period, and stray files of killed writers."""
        now = time.time()
        keep_retired = []
        changed = False
        for r in manifest.get("retired", []):
            if now - float(r["since"]) >= self.gc_grace_s:
                with contextlib.suppress(FileNotFoundError):
                    (d / "parts" / r["file"]).unlink()
                changed = True
            else:
                keep_retired.append(r)
        live = {p["file"] for p in manifest["parts"]} | {r["file"] for r in keep_retired}
        parts_dir = d / "parts"
        if parts_dir.is_dir():
            for f in parts_dir.iterdir():
                if f.name in live:
                    continue
                try:
                    age = now - f.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age >= max(self.gc_grace_s, 60.0):
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
        if changed:
            manifest["retired"] = keep_retired
            _atomic_write_bytes(d / MANIFEST, json.dumps(manifest, indent=1).encode())

    def verify(self, *, fix: bool = False, drop_damaged: bool = False) -> VerifyReport:
        """Scrub the whole store: every manifest, and every part it lists read whole, checked against its entry
        (size, checksum, schema, rows, ts bounds) and decoded (rows sorted by time, bounds exact).

        Nothing is changed, except with ``fix``: parts without a checksum (schema 1) that pass every check get
        one, and once no part lacks one, store.json is stamped with the current schema version; and with
        ``drop_damaged``: damaged parts leave their series (moved to its ``damaged/`` folder) and their periods
        leave its coverage, so the rest reads again and collect or import fetches those periods anew. A corrupt
        manifest is only reported (its series folder has to be restored or removed by hand)."""
        rep = VerifyReport()
        for mpath in self._manifest_paths():
            d = mpath.parent
            where = str(d.relative_to(self.market))
            rep.series += 1
            try:
                m = self._read_manifest(d)
            except StoreError as e:
                problem = str(e).removeprefix(f"{mpath}: ")
                rep.problems.append({"series": where, "file": str(mpath), "problem": problem})
                continue
            if m is None:
                continue
            key = DataKey(m["kind"], m["exchange"], m["symbol"], m.get("timeframe"))
            kind = KINDS[m["kind"]]
            unchecked: dict[str, tuple[int, str]] = {}
            damaged: list[str] = []
            for p in m["parts"]:
                path = d / "parts" / p["file"]
                rep.parts += 1
                try:
                    data = path.read_bytes()
                except OSError as e:
                    if isinstance(e, FileNotFoundError) and not self._still_listed(d, p["file"]):
                        rep.parts -= 1  # replaced by a commit since we read the manifest
                        continue
                    rep.problems.append({"series": str(key), "file": str(path), "problem": _os_reason(e)})
                    damaged.append(p["file"])
                    continue
                rep.bytes += len(data)
                problem = _part_problem(p, kind, data) or _decoded_problem(p, kind, data)
                if problem:
                    rep.problems.append({"series": str(key), "file": str(path), "problem": problem})
                    damaged.append(p["file"])
                elif "checksum" not in p:
                    unchecked[p["file"]] = (len(data), _checksum(data))
            if unchecked and fix:
                rep.fixed += self._add_checksums(key, d, unchecked)
            else:
                rep.unverified += len(unchecked)
            if damaged and drop_damaged:
                rep.dropped += self._drop_parts(key, kind, d, damaged)
        if fix and rep.ok and not rep.unverified and self.schema_version < SCHEMA_VERSION:
            self._write_meta(self.root / STORE_META, replace=True)
        return rep

    def _manifest_paths(self) -> list[Path]:
        out: list[Path] = []
        for k in KINDS.values():
            base = self.market / k.name
            if base.is_dir():
                out += sorted(base.glob(("*/*/*/" if k.has_timeframe else "*/*/") + MANIFEST))
        return out

    def _still_listed(self, d: Path, fname: str) -> bool:
        try:
            m = self._read_manifest(d)
        except StoreError:
            return True
        return bool(m) and any(p["file"] == fname for p in m["parts"])

    def _add_checksums(self, key: DataKey, d: Path, sums: dict[str, tuple[int, str]]) -> int:
        """Record the size and checksum of verified schema-1 parts in the manifest (one atomic commit)."""
        with self._writer_lock(d):
            m = self._read_manifest(d)
            n = 0
            for p in m["parts"] if m else []:
                if p["file"] in sums and "checksum" not in p:
                    p["bytes"], p["checksum"] = sums[p["file"]]
                    n += 1
            if n and m:
                m["schema_version"] = SCHEMA_VERSION
                try:
                    _atomic_write_bytes(d / MANIFEST, json.dumps(m, indent=1).encode())
                except OSError as e:
                    raise StoreError(f"{key}: cannot write {d / MANIFEST}: {_os_reason(e)}") from e
        return n

    def _drop_parts(self, key: DataKey, kind: Kind, d: Path, files: list[str]) -> int:
        """Take damaged parts out of a series in one commit: the files move to ``damaged/`` (kept for a look,
        never read), and each part's whole period leaves the coverage so that collection fetches it again."""
        period = kind.period_for(key.timeframe)
        with self._writer_lock(d):
            m = self._read_manifest(d)
            if not m:
                return 0
            drop = [p for p in m["parts"] if p["file"] in files]
            if not drop:
                return 0
            coverage = [tuple(iv) for iv in m.get("coverage", [])]
            for p in drop:
                start, end = _period_bounds(p["period"], period)
                coverage = [iv for c in coverage for iv in subtract_intervals(c, [(start, end)])]
            m = {
                **m,
                "schema_version": SCHEMA_VERSION,
                "version": int(m["version"]) + 1,
                "updated": ms_to_iso(int(time.time() * 1000)),
                "parts": [p for p in m["parts"] if p["file"] not in files],
                "coverage": [list(iv) for iv in coverage],
            }
            try:
                (d / "damaged").mkdir(exist_ok=True)
                _atomic_write_bytes(d / MANIFEST, json.dumps(m, indent=1).encode())
                for p in drop:
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(d / "parts" / p["file"], d / "damaged" / p["file"])
            except OSError as e:
                raise StoreError(f"{key}: cannot drop damaged parts: {_os_reason(e)}") from e
            log.warning("%s: dropped %d damaged part(s) to %s", key, len(drop), d / "damaged")
        return len(drop)

    # ---------------------------------------------------------------- reading
    def _connection(self) -> duckdb.DuckDBPyConnection:
        with self._con_lock:
            if self._con is None:
                con = duckdb.connect(":memory:")
                con.execute(f"SET threads={int(self._duckdb_threads)}")
                self._con = con
            return self._con.cursor()

    def _snapshot_files(
        self, key: DataKey, start_ms: int | None, end_ms: int | None
    ) -> tuple[dict[str, Any] | None, list[str]]:
        d = self.series_dir(key)
        m = self._read_manifest(d)
        if m is None:
            return None, []
        kind = self._kind(key.kind)
        files = []
        for p in m["parts"]:
            if (end_ms is None or p["min_ts"] < end_ms) and (start_ms is None or p["max_ts"] >= start_ms):
                self._part_source(key, d, p, kind)  # verified before DuckDB reads it
                files.append(str(d / "parts" / p["file"]))
        return m, files

    def read_table(
        self,
        key: DataKey,
        start: object = None,
        end: object = None,
        *,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rows of one series with ``start <= ts < end`` (either may be None), sorted by time, as Arrow."""
        kind = self._kind(key.kind)
        start_ms = None if start is None else to_ms(start, what="start")
        end_ms = None if end is None else to_ms(end, what="end")
        cols = list(columns) if columns else kind.schema.names
        unknown = [c for c in cols if c not in kind.schema.names]
        if unknown:
            raise StoreError(f"{key}: unknown column(s) {unknown}; columns: {kind.schema.names}")

        def query() -> pa.Table:
            # Parts are read with pyarrow (its memory pool reuses pages: about 2x faster warm than DuckDB's
            # scan + Arrow export here), the time filter applied on the row-group statistics and then exactly.
            d = self.series_dir(key)
            m = self._read_manifest(d)
            parts = [
                p
                for p in (m["parts"] if m else [])
                if (end_ms is None or p["min_ts"] < end_ms) and (start_ms is None or p["max_ts"] >= start_ms)
            ]
            if not parts:
                return kind.schema.empty_table().select(cols)
            read_cols = cols if "ts" in cols else [*cols, "ts"]
            tables = []
            for p in parts:
                filters = []
                if start_ms is not None and p["min_ts"] < start_ms:
                    filters.append(("ts", ">=", start_ms))
                if end_ms is not None and p["max_ts"] >= end_ms:
                    filters.append(("ts", "<", end_ms))
                src = self._part_source(key, d, p, kind)
                tables.append(pq.read_table(src, columns=read_cols, filters=filters or None))
            t = pa.concat_tables(tables)
            return t.select(cols) if read_cols != cols else t

        table = _retry_read(query, f"{key}: cannot read")
        if "ts" in cols and table.num_rows > 1:
            ts = table.column("ts").to_numpy()
            if np.any(np.diff(ts) < 0):
                table = table.take(pa.array(np.argsort(ts, kind="stable")))
        return table

    def candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start: object = None,
        end: object = None,
    ) -> pd.DataFrame:
        """Validated Candles: UTC ``DatetimeIndex`` of bar-open times, float64 open/high/low/close/volume.

        ``start`` is inclusive and ``end`` exclusive (ISO strings, datetimes or epoch ms). The frame's
        ``attrs`` carry exchange, symbol and timeframe. Raises :class:`StoreError` if the series is absent.
        """
        key = self.key("candles", exchange, symbol, timeframe)
        if self.manifest(key) is None:
            have = [f"{k.symbol} {k.timeframe}" for k in self.series("candles") if k.exchange == exchange]
            raise StoreError(
                f"no candles stored for {exchange} {symbol} {key.timeframe}"
                + (
                    f"; stored: {', '.join(have)}"
                    if have
                    else "; run `workbench collect ohlcv` or `workbench init --sample`"
                )
            )
        table = self.read_table(key, start, end)
        ns = (table.column("ts").to_numpy() * 1_000_000).view("datetime64[ns]")
        index = pd.DatetimeIndex(ns, name="time").tz_localize("UTC")
        # one (5, n) block filled chunk by chunk: pandas takes it as its single float block without copying
        block = np.empty((len(CANDLE_COLUMNS), table.num_rows), dtype="float64")
        for j, c in enumerate(CANDLE_COLUMNS):
            off = 0
            for chunk in table.column(c).chunks:
                block[j, off : off + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
                off += len(chunk)
        df = pd.DataFrame(block.T, index=index, columns=list(CANDLE_COLUMNS), copy=False)
        df.attrs.update(exchange=exchange, symbol=symbol, timeframe=key.timeframe)
        return df

    # ---------------------------------------------------------------- listing and SQL
    def series(self, kind: str | None = None) -> list[DataKey]:
        """Every series in the store (optionally of one kind), from the manifests."""
        out: list[DataKey] = []
        kinds = [self._kind(kind)] if kind else list(KINDS.values())
        for k in kinds:
            base = self.market / k.name
            if not base.is_dir():
                continue
            pattern = "*/*/*/" + MANIFEST if k.has_timeframe else "*/*/" + MANIFEST
            for mpath in sorted(base.glob(pattern)):
                m = self._read_manifest(
                    mpath.parent
                )  # a corrupt manifest is an error, never a missing series
                if m and m["parts"]:
                    out.append(DataKey(m["kind"], m["exchange"], m["symbol"], m.get("timeframe")))
        return out

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run DuckDB SQL over views of the whole store (one consistent snapshot per series).

        Views: ``candles(exchange, symbol, timeframe, ts, time, open, high, low, close, volume)``,
        ``trades``, ``orderbook``, ``tickers``, ``funding`` (each with exchange, symbol, ts, time, ...).
        Only the views the query names are built; their parts are verified (once per process) first.
        """
        return _retry_vanished(lambda: self._sql_once(query, params), "SQL error")

    def _sql_once(self, query: str, params: Sequence[Any] | None) -> pd.DataFrame:
        con = self._connection()
        for kind in KINDS.values():
            if not re.search(rf"\b{kind.name}\b", query, re.IGNORECASE):
                continue  # a view the query does not name: neither built nor its parts verified
            selects = []
            for key in self.series(kind.name):
                _, files = self._snapshot_files(key, None, None)
                if not files:
                    continue
                flist = "[" + ", ".join(_sql_str(f) for f in files) + "]"
                tf = f", {_sql_str(key.timeframe)} AS timeframe" if kind.has_timeframe else ""
                cols = ", ".join(f'"{c}"' for c in kind.schema.names)
                selects.append(
                    f"SELECT {_sql_str(key.exchange)} AS exchange, {_sql_str(key.symbol)} AS symbol{tf}, "
                    f"{cols}, make_timestamptz(ts * 1000) AS time FROM read_parquet({flist})"
                )
            if not selects:
                empty_cols = ", ".join(
                    f'CAST(NULL AS {_duck_type(f.type)}) AS "{f.name}"' for f in kind.schema
                )
                tf = ", CAST(NULL AS VARCHAR) AS timeframe" if kind.has_timeframe else ""
                selects = [
                    "SELECT CAST(NULL AS VARCHAR) AS exchange, CAST(NULL AS VARCHAR) AS symbol"
                    f"{tf}, {empty_cols}, CAST(NULL AS TIMESTAMPTZ) AS time WHERE false"
                ]
            con.execute(f"CREATE OR REPLACE TEMP VIEW {kind.name} AS " + " UNION ALL ".join(selects))
        return con.execute(query, params or []).df()

    def close(self) -> None:
        with self._con_lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sql_str(s: object) -> str:
    return "'" + str(s).replace("'", "''") + "'"


_VANISHED = ("No such file or directory", "No files found", "Cannot open file")


def _retry_vanished(fn: Any, what: str, attempts: int = 8) -> Any:
    """Run a read; if a part file vanished under it (collected after our manifest read), retry on the new
    manifest. Any other DuckDB error, or a file that keeps vanishing, is a StoreError."""
    for attempt in range(attempts):
        try:
            return fn()
        except FileNotFoundError as e:  # a part collected between our manifest read and its verification
            if attempt < attempts - 1:
                time.sleep(0.005 * (attempt + 1))
                continue
            raise StoreError(f"{what}: {e}") from e
        except duckdb.Error as e:
            if attempt < attempts - 1 and any(m in str(e) for m in _VANISHED):
                time.sleep(0.005 * (attempt + 1))
                continue
            raise StoreError(f"{what}: {e}") from e
    raise AssertionError("unreachable")


def _retry_read(fn: Any, what: str, attempts: int = 8) -> Any:
    """Like :func:`_retry_vanished`, for pyarrow reads: a part collected under us means a newer manifest."""
    for attempt in range(attempts):
        try:
            return fn()
        except FileNotFoundError as e:
            if attempt < attempts - 1:
                time.sleep(0.005 * (attempt + 1))
                continue
            raise StoreError(f"{what}: {e}") from e
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{what}: {e}") from e
    raise AssertionError("unreachable")


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_floating(t):
        return "DOUBLE"
    return "VARCHAR"
