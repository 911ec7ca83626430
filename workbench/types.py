"""Domain types shared by every layer: timeframes, the Candles schema and its validation.

Pure: no I/O, no exchange client. Everything here is safe to import from anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

__all__ = [
    "CANDLE_COLUMNS",
    "CandleValidationError",
    "DataKey",
    "Timeframe",
    "candles_from_frame",
    "ms_to_iso",
    "to_ms",
    "validate_candles",
]

CANDLE_COLUMNS: Final = ("open", "high", "low", "close", "volume")

_UNIT_MS: Final = {
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
}
_TF_RE: Final = re.compile(r"^(\d+)([smhdwM])$")


class CandleValidationError(ValueError):
    """Candles that break the schema. The message names the source, the column and the row."""


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A ccxt timeframe string (``'1m'``, ``'1h'``, ``'1d'``) with its length in milliseconds.

    Calendar months (``'1M'``) have no fixed length and are rejected where a fixed grid is needed.
    """

    value: str
    ms: int

    @classmethod
    def parse(cls, value: str | Timeframe) -> Timeframe:
        if isinstance(value, Timeframe):
            return value
        m = _TF_RE.match(str(value).strip())
        if not m:
            raise ValueError(
                f"invalid timeframe {value!r}: expected a ccxt timeframe such as '1m', '5m', '1h', '4h', '1d'"
            )
        n, unit = int(m.group(1)), m.group(2)
        if n <= 0:
            raise ValueError(f"invalid timeframe {value!r}: the count must be positive")
        if unit == "M":
            raise ValueError(
                f"timeframe {value!r} (calendar month) has no fixed length; use '1w' or '1d' and resample"
            )
        return cls(f"{n}{unit}", n * _UNIT_MS[unit])

    @property
    def pandas_freq(self) -> str:
        return f"{self.ms}ms"

    def floor(self, ts_ms: int) -> int:
        """The open time of the bar that contains ``ts_ms`` (bars aligned to the UNIX epoch)."""
        return ts_ms - ts_ms % self.ms

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class DataKey:
    """Names one series in the store: a kind of data for an exchange and a ccxt unified symbol."""

    kind: str
    exchange: str
    symbol: str
    timeframe: str | None = None

    def __str__(self) -> str:
        tf = f" {self.timeframe}" if self.timeframe else ""
        return f"{self.kind} {self.exchange} {self.symbol}{tf}"


def _row_hint(index: pd.Index, pos: int, ts: np.ndarray | None = None) -> str:
    """Human label of a row: its position (1-based, as in a file without header) and its time."""
    when = ""
    if ts is not None and 0 <= pos < len(ts):
        when = f" ({pd.Timestamp(int(ts[pos]), unit='ms', tz='UTC').isoformat()})"
    return f"row {pos + 1}{when}"


def validate_candles(
    ts_ms: np.ndarray,
    ohlcv: dict[str, np.ndarray],
    *,
    timeframe: Timeframe | None,
    source: str,
    check_order: bool = True,
) -> None:
    """Raise :class:`CandleValidationError` naming ``source`` and the first bad row.

    Checks: int64 timestamps aligned to the timeframe, strictly increasing (when ``check_order``),
    finite float prices > 0, finite volume >= 0, and OHLC consistency (low <= open, close <= high).
    """
    n = len(ts_ms)
    idx = pd.RangeIndex(n)
    for col in CANDLE_COLUMNS:
        arr = ohlcv[col]
        if len(arr) != n:
            raise CandleValidationError(f"{source}: column {col!r} has {len(arr)} values, expected {n}")
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise CandleValidationError(
                f"{source}: {_row_hint(idx, bad[0], ts_ms)}: column {col!r} is not a finite number "
                f"({arr[bad[0]]!r}); {bad.size} such row(s)"
            )
        bad = np.flatnonzero(arr < 0 if col == "volume" else arr <= 0)
        if bad.size:
            what = "negative" if col == "volume" else "not positive"
            raise CandleValidationError(
                f"{source}: {_row_hint(idx, bad[0], ts_ms)}: {col} is {what} ({arr[bad[0]]!r})"
            )
    o, h, lo, c = (ohlcv[k] for k in ("open", "high", "low", "close"))
    bad = np.flatnonzero((h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (lo > h))
    if bad.size:
        i = bad[0]
        raise CandleValidationError(
            f"{source}: {_row_hint(idx, i, ts_ms)}: inconsistent OHLC "
            f"(open={o[i]!r} high={h[i]!r} low={lo[i]!r} close={c[i]!r}); {bad.size} such row(s)"
        )
    if timeframe is not None and n:
        bad = np.flatnonzero(ts_ms % timeframe.ms != 0)
        if bad.size:
            raise CandleValidationError(
                f"{source}: {_row_hint(idx, bad[0], ts_ms)}: timestamp {int(ts_ms[bad[0]])} is not aligned "
                f"to the {timeframe} grid (it must be a bar-open time)"
            )
    if check_order and n > 1:
        d = np.diff(ts_ms)
        bad = np.flatnonzero(d <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            kind = "duplicate" if d[bad[0]] == 0 else "out-of-order"
            raise CandleValidationError(f"{source}: {_row_hint(idx, i, ts_ms)}: {kind} timestamp")


def candles_from_frame(df: pd.DataFrame, *, timeframe: Timeframe | str | None, source: str) -> pd.DataFrame:
    """Turn an OHLCV frame with an int64 ms ``timestamp`` column into validated Candles.

    Candles: a DataFrame indexed by a UTC ``DatetimeIndex`` named ``time`` (bar-open times, sorted, unique)
    with float64 columns open, high, low, close, volume.
    """
    tf = Timeframe.parse(timeframe) if timeframe is not None else None
    ts = df["timestamp"].to_numpy(dtype="int64")
    cols = {c: df[c].to_numpy(dtype="float64") for c in CANDLE_COLUMNS}
    validate_candles(ts, cols, timeframe=tf, source=source)
    index = pd.DatetimeIndex(pd.to_datetime(ts, unit="ms", utc=True), name="time")
    return pd.DataFrame(cols, index=index)


def to_ms(value: object, *, what: str = "time") -> int:
    """Parse a time into UTC epoch milliseconds.

    Accepts epoch milliseconds (int), ISO 8601 strings (``2024-01-01``, ``2024-01-01T12:00:00Z``; a string
    without a zone is UTC), ``datetime`` and ``pandas.Timestamp`` (naive means UTC).
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid {what} {value!r}")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    try:
        ts = pd.Timestamp(value)  # type: ignore[arg-type]
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"invalid {what} {value!r}: expected an ISO 8601 date or time (2024-01-01, 2024-01-01T12:00Z) "
            "or epoch milliseconds"
        ) from e
    if ts is pd.NaT:
        raise ValueError(f"invalid {what} {value!r}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def ms_to_iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
