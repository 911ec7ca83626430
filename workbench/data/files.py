"""Import and export candle files (CSV, gzip CSV, Parquet).

Columns: ``timestamp`` (UTC epoch milliseconds, or ISO 8601), ``open``, ``high``, ``low``, ``close``,
``volume``. An import is validated whole before anything is written, and errors name the file, the row
(1-based data row, as numbered below the header) and the column; a bad value is quoted cut to
``MAX_QUOTE`` characters.

Epoch timestamps in microseconds or nanoseconds (Binance's spot files since 2025 are in microseconds) are
recognised by their magnitude and converted to milliseconds: for times in 1990..2100 the ranges of s, ms, µs and
ns do not overlap. Epoch seconds, a file that mixes units, a value that is not a whole millisecond and any time
outside 1990..2100 are refused with the row.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.data.store import TS_MAX_MS, TS_MIN_MS, Store, WriteResult
from workbench.types import CANDLE_COLUMNS, CandleValidationError, Timeframe, to_ms, validate_candles

__all__ = ["FileFormatError", "export_candles", "import_candles", "read_candle_file"]

FILE_COLUMNS = ("timestamp", *CANDLE_COLUMNS)
MAX_QUOTE = 60  # characters of a bad value or column name quoted in an error
# epoch units by magnitude: value = ms * scale; for 1990..2100 the ranges are disjoint
_UNITS = (("seconds", 1e-3), ("milliseconds", 1.0), ("microseconds", 1e3), ("nanoseconds", 1e6))


def _quote(value: object, limit: int = MAX_QUOTE) -> str:
    """``repr`` of a value from a file, cut to ``limit`` characters with its full length noted."""
    text = str(value)
    if len(text) <= limit:
        return repr(value) if isinstance(value, str) else repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


class FileFormatError(ValueError):
    """A file that cannot be imported; the message names the file, the row and the column."""


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst")):
        return "csv"
    raise FileFormatError(f"{path}: unknown file type; use .csv, .csv.gz or .parquet")


def read_candle_file(path: str | os.PathLike[str], timeframe: str | Timeframe | None = None) -> pd.DataFrame:
    """Read and validate a candle file into a frame with ``ts`` (int64 ms) and float64 OHLCV, sorted by time.

    Raises :class:`FileFormatError` naming the file, row and column on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: file not found")
    fmt = _format_of(path)
    try:
        if fmt == "parquet":
            df = pq.read_table(path).to_pandas()
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise FileFormatError(f"{path}: cannot read as {fmt}: {str(e)[:500]}") from e
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in FILE_COLUMNS if c not in df.columns]
    if missing:
        found = ", ".join(_quote(c, 40) for c in df.columns[:20]) + (
            f", ... ({len(df.columns)} columns)" if len(df.columns) > 20 else ""
        )
        raise FileFormatError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(FILE_COLUMNS)} (found {found})"
        )
    if df.empty:
        raise FileFormatError(f"{path}: no rows")
    ts = _parse_timestamps(df["timestamp"], path)
    cols: dict[str, np.ndarray] = {}
    for c in CANDLE_COLUMNS:
        values = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64")
        bad = np.flatnonzero(np.isnan(values))
        if bad.size:
            raw = df[c].iloc[bad[0]]
            raise FileFormatError(f"{path}: row {bad[0] + 1}: column {c!r}: not a number ({_quote(raw)})")
        cols[c] = values
    tf = Timeframe.parse(timeframe) if timeframe is not None else None
    try:
        validate_candles(ts, cols, timeframe=tf, source=str(path), check_order=True)
    except CandleValidationError as e:
        raise FileFormatError(str(e)) from None
    return pd.DataFrame({"ts": ts, **cols})


def _parse_timestamps(col: pd.Series, path: Path) -> np.ndarray:
    if pd.api.types.is_integer_dtype(col):
        return _epoch_to_ms(col.to_numpy(dtype="int64"), np.arange(len(col)), path)
    if pd.api.types.is_datetime64_any_dtype(col):
        s = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
        return _in_range(s.dt.as_unit("ms").astype("int64").to_numpy(), np.arange(len(col)), path)
    s = col.astype(str).str.strip()
    is_int = s.str.fullmatch(r"-?\d{1,19}").to_numpy()
    ts = np.zeros(len(s), dtype="int64")
    if is_int.any():
        rows = np.flatnonzero(is_int)
        try:
            raw = s[is_int].astype("int64").to_numpy()
        except (OverflowError, ValueError):  # 19 digits beyond int64
            raw = None
        if raw is None:
            big = next(int(r) for r in rows if abs(int(s.iloc[r])) > np.iinfo(np.int64).max)
            raise FileFormatError(
                f"{path}: row {big + 1}: column 'timestamp': {_quote(s.iloc[big])} is out of range for epoch time"
            )
        ts[is_int] = _epoch_to_ms(raw, rows, path)
    if not is_int.all():
        parsed = pd.to_datetime(s[~is_int], utc=True, errors="coerce", format="ISO8601")
        bad_iso = parsed.isna().to_numpy()
        if bad_iso.any():
            row = int(np.flatnonzero(~is_int)[np.argmax(bad_iso)])
            raise FileFormatError(
                f"{path}: row {row + 1}: column 'timestamp': not epoch milliseconds nor ISO 8601 "
                f"({_quote(s.iloc[row])})"
            )
        ts[~is_int] = _in_range(
            parsed.dt.as_unit("ms").astype("int64").to_numpy(), np.flatnonzero(~is_int), path
        )
    return ts


def _epoch_to_ms(raw: np.ndarray, rows: np.ndarray, path: Path) -> np.ndarray:
    """Epoch integers (``rows``: their 0-based rows) in one unit, detected by magnitude, as milliseconds."""
    unit = np.full(len(raw), -1)
    for i, (_, scale) in enumerate(_UNITS):
        unit[(raw >= TS_MIN_MS * scale) & (raw < TS_MAX_MS * scale)] = i
    if (unit < 0).any():
        j = int(np.argmax(unit < 0))
        raise FileFormatError(
            f"{path}: row {rows[j] + 1}: column 'timestamp': {raw[j]} is not a time in 1990-01-01..2100-01-01 "
            "as epoch seconds, milliseconds, microseconds or nanoseconds"
        )
    first = int(unit[0])
    if (unit != first).any():
        j = int(np.argmax(unit != first))
        raise FileFormatError(
            f"{path}: row {rows[j] + 1}: column 'timestamp': {raw[j]} is in epoch {_UNITS[unit[j]][0]}, but row "
            f"{rows[0] + 1} ({raw[0]}) is in epoch {_UNITS[first][0]}; a file must use one unit"
        )
    name, scale = _UNITS[first]
    if name == "seconds":
        raise FileFormatError(
            f"{path}: column 'timestamp' looks like epoch seconds ({raw[0]}); milliseconds are required"
        )
    if scale == 1.0:
        return raw
    div = int(scale)
    off = np.flatnonzero(raw % div)
    if off.size:
        j = int(off[0])
        raise FileFormatError(
            f"{path}: row {rows[j] + 1}: column 'timestamp': {raw[j]} (epoch {name}) is not a whole millisecond"
        )
    return raw // div


def _in_range(ms: np.ndarray, rows: np.ndarray, path: Path) -> np.ndarray:
    bad = np.flatnonzero((ms < TS_MIN_MS) | (ms >= TS_MAX_MS))
    if bad.size:
        j = int(bad[0])
        raise FileFormatError(
            f"{path}: row {rows[j] + 1}: column 'timestamp': {pd.Timestamp(int(ms[j]), unit='ms')} is outside "
            "1990-01-01..2100-01-01"
        )
    return ms


def import_candles(
    store: Store, path: str | os.PathLike[str], exchange: str, symbol: str, timeframe: str
) -> WriteResult:
    """Validate a whole file, then upsert it into the store in one atomic commit (nothing on error)."""
    tf = Timeframe.parse(timeframe)
    df = read_candle_file(path, tf)
    key = store.key("candles", exchange, symbol, tf.value)
    first, last = int(df["ts"].iloc[0]), int(df["ts"].iloc[-1])
    return store.write(key, df, source=str(path), coverage=(first, last + tf.ms))


def export_candles(
    store: Store,
    exchange: str,
    symbol: str,
    timeframe: str,
    out: str | os.PathLike[str],
    start: object = None,
    end: object = None,
) -> int:
    """Write candles to ``out`` (.csv, .csv.gz or .parquet) with ``timestamp`` in UTC ms; returns rows.

    The file appears whole or not at all (written to a temporary name, then renamed).
    """
    out = Path(out)
    fmt = _format_of(out)
    key = store.key("candles", exchange, symbol, timeframe)
    if store.manifest(key) is None:
        raise FileFormatError(f"no candles stored for {key}")
    table = store.read_table(
        key,
        None if start is None else to_ms(start, what="start"),
        None if end is None else to_ms(end, what="end"),
    ).rename_columns(list(FILE_COLUMNS))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        if fmt == "parquet":
            pq.write_table(table, tmp, compression="zstd")
        else:
            ext = out.name.rsplit(".", 1)[-1].lower()
            compression = {"gz": "gzip", "bz2": "bz2", "xz": "xz", "zst": "zstd"}.get(ext)
            # pandas writes floats as their shortest round-trip repr: the export is lossless
            table.to_pandas().to_csv(tmp, index=False, compression=compression)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return table.num_rows
