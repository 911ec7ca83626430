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
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
    "Kind",
    "Store",
    "StoreError",
    "WriteResult",
    "merge_intervals",
    "subtract_intervals",
]

SCHEMA_VERSION: Final = 1
MANIFEST: Final = "manifest.json"


class StoreError(RuntimeError):
    """A store problem; the message names the series or the file."""


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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


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
        meta = self.root / "store.json"
        if meta.is_file():
            try:
                info = json.loads(meta.read_text())
                version = int(info["schema_version"])
            except (ValueError, KeyError, TypeError) as e:
                raise StoreError(f"{meta}: not a workbench store description ({e})") from e
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{meta}: store schema version {version} is newer than this workbench supports "
                    f"({SCHEMA_VERSION}); upgrade workbench"
                )
            return
        if not create:
            raise StoreError(f"{self.root}: no workbench store here (run `workbench init`)")
        self.market.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            # first process wins; the others see the file
            fd = os.open(meta, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "w") as f:
                json.dump({"schema_version": SCHEMA_VERSION, "format": "workbench-store"}, f)
                f.flush()
                os.fsync(f.fileno())

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
        try:
            raw = (d / MANIFEST).read_bytes()
        except FileNotFoundError:
            return None
        try:
            m = json.loads(raw)
        except ValueError as e:
            raise StoreError(f"{d / MANIFEST}: corrupt manifest ({e})") from e
        if int(m.get("schema_version", 0)) > SCHEMA_VERSION:
            raise StoreError(f"{d / MANIFEST}: schema version {m['schema_version']} is newer than supported")
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
        return (
            min(p["min_ts"] for p in m["parts"]),
            max(p["max_ts"] for p in m["parts"]),
            sum(p["rows"] for p in m["parts"]),
        )

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
        period = kind.period_for(key.timeframe)
        with self._writer_lock(d):
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
                        old_table = self._read_part(d, old["file"], kind)
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
                    self._write_part(d / "parts" / fname, merged)
                    new_parts[label] = self._part_entry(label, fname, merged)
                    if old is not None:
                        retired.append({"file": old["file"], "since": time.time()})
            old_coverage = [tuple(iv) for iv in manifest.get("coverage", [])]
            new_coverage = merge_intervals([*old_coverage, coverage]) if coverage else old_coverage
            if not new_parts and new_coverage == old_coverage:
                self._gc(d, manifest)
                return WriteResult(key, table.num_rows, 0, 0, 0, int(manifest["version"]))
            parts.update(new_parts)
            manifest = {
                **manifest,
                "coverage": [list(iv) for iv in new_coverage],
                "version": version,
                "updated": ms_to_iso(int(time.time() * 1000)),
                "parts": [parts[p] for p in sorted(parts)],
                "retired": retired,
            }
            _atomic_write_bytes(d / MANIFEST, json.dumps(manifest, indent=1).encode())
            self._gc(d, manifest)
        return WriteResult(key, table.num_rows, added, updated, len(new_parts), version)

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

    def _write_part(self, path: Path, table: pa.Table) -> None:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        pq.write_table(
            table,
            tmp,
            compression=self.compression or "none",
            use_dictionary=[f.name for f in table.schema if pa.types.is_string(f.type)],
            write_statistics=True,
        )
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @staticmethod
    def _part_entry(label: str, fname: str, table: pa.Table) -> dict[str, Any]:
        ts = table.column("ts")
        return {
            "period": label,
            "file": fname,
            "rows": table.num_rows,
            "min_ts": int(pa.compute.min(ts).as_py()),
            "max_ts": int(pa.compute.max(ts).as_py()),
        }

    @staticmethod
    def _read_part(d: Path, fname: str, kind: Kind) -> pa.Table:
        return pq.read_table(d / "parts" / fname, schema=kind.schema)

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
        files = [
            str(d / "parts" / p["file"])
            for p in m["parts"]
            if (end_ms is None or p["min_ts"] < end_ms) and (start_ms is None or p["max_ts"] >= start_ms)
        ]
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
                tables.append(pq.read_table(d / "parts" / p["file"], columns=read_cols, filters=filters or None))
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
                + (f"; stored: {', '.join(have)}" if have else "; run `workbench collect ohlcv` or `workbench init --sample`")
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
                try:
                    m = self._read_manifest(mpath.parent)
                except StoreError:
                    continue
                if m and m["parts"]:
                    out.append(DataKey(m["kind"], m["exchange"], m["symbol"], m.get("timeframe")))
        return out

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run DuckDB SQL over views of the whole store (one consistent snapshot per series).

        Views: ``candles(exchange, symbol, timeframe, ts, time, open, high, low, close, volume)``,
        ``trades``, ``orderbook``, ``tickers``, ``funding`` (each with exchange, symbol, ts, time, ...).
        """
        return _retry_vanished(lambda: self._sql_once(query, params), "SQL error")

    def _sql_once(self, query: str, params: Sequence[Any] | None) -> pd.DataFrame:
        con = self._connection()
        for kind in KINDS.values():
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
                empty_cols = ", ".join(f'CAST(NULL AS {_duck_type(f.type)}) AS "{f.name}"' for f in kind.schema)
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
