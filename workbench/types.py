"""Domain types shared by every layer: timeframes, the Candles schema and its validation, and the trading
records (orders, fills, positions) with the order state table.

Pure: no I/O, no exchange client. Everything here is safe to import from anywhere.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

import numpy as np
import pandas as pd

__all__ = [
    "CANDLE_COLUMNS",
    "ORDER_TRANSITIONS",
    "CandleValidationError",
    "DataKey",
    "Fill",
    "Order",
    "OrderStateError",
    "OrderStatus",
    "OrderType",
    "Position",
    "Side",
    "TimeInForce",
    "Timeframe",
    "candles_from_frame",
    "ms_to_iso",
    "schema_problem",
    "times_ms",
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


def times_ms(values: object) -> np.ndarray:
    """Times (epoch ms ints, datetimes, ISO strings; naive = UTC) -> int64 epoch ms, floored (one array)."""
    s = pd.Series(values)
    if len(s) == 0:
        return np.zeros(0, dtype=np.int64)
    if s.isna().any():
        raise ValueError(f"{int(s.isna().sum())} item(s) without a time")
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(s.dtype):
        return np.floor(s.to_numpy(dtype=float)).astype(np.int64)
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype):
        dt = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
        return pd.DatetimeIndex(dt).as_unit("ns").asi8 // 1_000_000
    # mixed values (JSON: epoch ms and ISO strings side by side): one at a time
    return np.array([to_ms(v, what="item time") for v in s.to_numpy(dtype=object)], dtype=np.int64)


def ms_to_iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------ trading records


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    GTC = "GTC"  # good till cancelled
    IOC = "IOC"  # immediate or cancel
    FOK = "FOK"  # fill or kill


class OrderStatus(StrEnum):
    """An order's lifecycle (after nautilus_trader's order states, for spot venues):

    INITIALIZED (created, journalled, not sent) -> DENIED (refused by the risk manager; never sent) or
    SUBMITTED (sent; the venue's answer not yet known) -> ACCEPTED (open at the venue) or REJECTED ->
    PARTIALLY_FILLED -> FILLED; PENDING_CANCEL (cancel sent) -> CANCELED; EXPIRED (IOC/FOK remainder, or the
    venue's expiry). A fill may still arrive after a cancel was sent or even confirmed (the venue matched the
    order before the cancel reached it): CANCELED and EXPIRED accept late fills, as the table below says.
    """

    INITIALIZED = "INITIALIZED"
    DENIED = "DENIED"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"

    @property
    def is_open(self) -> bool:
        """Working at the venue, or possibly so (SUBMITTED: the outcome is not known yet)."""
        return self in _OPEN

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_S = OrderStatus
_OPEN: Final = frozenset({_S.SUBMITTED, _S.ACCEPTED, _S.PARTIALLY_FILLED, _S.PENDING_CANCEL})
_TERMINAL: Final = frozenset({_S.DENIED, _S.REJECTED, _S.FILLED, _S.CANCELED, _S.EXPIRED})

ORDER_TRANSITIONS: Final[dict[OrderStatus, frozenset[OrderStatus]]] = {
    _S.INITIALIZED: frozenset({_S.DENIED, _S.SUBMITTED}),
    # a fast venue can answer with a fill before the acceptance is seen
    _S.SUBMITTED: frozenset(
        {_S.ACCEPTED, _S.REJECTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.EXPIRED, _S.PENDING_CANCEL}
    ),
    _S.ACCEPTED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.PENDING_CANCEL, _S.CANCELED, _S.EXPIRED}),
    _S.PARTIALLY_FILLED: frozenset(
        {_S.PARTIALLY_FILLED, _S.FILLED, _S.PENDING_CANCEL, _S.CANCELED, _S.EXPIRED}
    ),
    _S.PENDING_CANCEL: frozenset({_S.CANCELED, _S.PARTIALLY_FILLED, _S.FILLED, _S.ACCEPTED, _S.EXPIRED}),
    # late fills: matched at the venue before the cancel (or the expiry) took effect
    _S.CANCELED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED}),
    _S.EXPIRED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED}),
    _S.DENIED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.FILLED: frozenset(),
}
"""Allowed status changes. A late fill on a CANCELED/EXPIRED order keeps it terminal in effect: the filled
amount grows, and the status becomes FILLED only if the whole amount filled."""


class OrderStateError(ValueError):
    """A status change the order state table does not allow; names the order and both states."""


@dataclass(frozen=True, slots=True)
class Order:
    """One order, immutable: every change is a new record (``with_status``, ``with_fill``).

    ``amount`` is in base units, always positive (``side`` gives the direction). ``tag`` tells the strategy's
    orders from manual ones (``"manual"``), which are kept as their own sub-position.
    """

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    amount: float
    price: float | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    status: OrderStatus = OrderStatus.INITIALIZED
    filled: float = 0.0
    avg_price: float | None = None
    exchange_order_id: str | None = None
    created_ms: int = 0
    updated_ms: int = 0
    tag: str = "strategy"
    reduce_only: bool = False
    reason: str | None = None  # why it was denied, rejected, canceled

    def __post_init__(self) -> None:
        if not self.amount > 0:
            raise ValueError(f"order {self.client_order_id}: amount must be positive, got {self.amount!r}")
        if self.type is OrderType.LIMIT and not (self.price is not None and self.price > 0):
            raise ValueError(f"order {self.client_order_id}: a limit order needs a positive price")

    @property
    def remaining(self) -> float:
        return max(self.amount - self.filled, 0.0)

    @property
    def signed_amount(self) -> float:
        return self.side.sign * self.amount

    def with_status(self, status: OrderStatus, *, ts_ms: int | None = None, **changes: object) -> Order:
        """This order in ``status`` (checked against :data:`ORDER_TRANSITIONS`)."""
        status = OrderStatus(status)
        if status != self.status and status not in ORDER_TRANSITIONS[self.status]:
            raise OrderStateError(
                f"order {self.client_order_id}: {self.status.value} -> {status.value} is not a valid transition"
            )
        return replace(self, status=status, updated_ms=self.updated_ms if ts_ms is None else ts_ms, **changes)  # type: ignore[arg-type]

    def with_fill(self, fill: Fill) -> Order:
        """This order after ``fill``: filled amount and average price, status PARTIALLY_FILLED or FILLED (a
        CANCELED/EXPIRED order stays so unless the late fill completes it)."""
        if fill.client_order_id != self.client_order_id:
            raise ValueError(
                f"fill {fill.trade_id} belongs to {fill.client_order_id}, not {self.client_order_id}"
            )
        if fill.symbol != self.symbol or fill.side is not self.side:
            raise ValueError(
                f"fill {fill.trade_id} ({fill.side.value} {fill.symbol}) does not match order "
                f"{self.client_order_id} ({self.side.value} {self.symbol})"
            )
        filled = self.filled + fill.amount
        if filled > self.amount * (1 + 1e-9):
            raise OrderStateError(
                f"order {self.client_order_id}: fills of {filled} exceed the amount {self.amount}"
            )
        if not self.filled or self.avg_price is None:
            avg = fill.price
        else:
            avg = (self.avg_price * self.filled + fill.price * fill.amount) / filled
        done = filled >= self.amount * (1 - 1e-9)
        if self.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED) and not done:
            status = self.status
        else:
            status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        if status != self.status and status not in ORDER_TRANSITIONS[self.status]:
            raise OrderStateError(
                f"order {self.client_order_id}: a fill in state {self.status.value} is not possible"
            )
        return replace(
            self, filled=min(filled, self.amount), avg_price=avg, status=status, updated_ms=fill.timestamp
        )


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``amount`` in base units (positive), ``price`` in quote, ``fee`` in ``fee_currency``
    (the quote, the base or a third asset such as BNB), ``timestamp`` in epoch ms."""

    client_order_id: str
    symbol: str
    side: Side
    amount: float
    price: float
    fee: float
    fee_currency: str
    timestamp: int
    trade_id: str
    exchange_order_id: str | None = None
    liquidity: str = "taker"  # or "maker"
    tag: str = "strategy"

    def __post_init__(self) -> None:
        if not (self.amount > 0 and math.isfinite(self.amount)):
            raise ValueError(f"fill {self.trade_id}: amount must be positive, got {self.amount!r}")
        if not (self.price > 0 and math.isfinite(self.price)):
            raise ValueError(f"fill {self.trade_id}: price must be positive, got {self.price!r}")
        if not math.isfinite(self.fee):  # negative: a maker rebate
            raise ValueError(f"fill {self.trade_id}: fee must be a finite number, got {self.fee!r}")

    @property
    def signed_amount(self) -> float:
        return self.side.sign * self.amount

    @property
    def notional(self) -> float:
        return self.amount * self.price


@dataclass(frozen=True, slots=True)
class Position:
    """A position in one symbol: signed base amount, average entry price, realised PnL and fees in quote.

    Changes only by :meth:`apply` of a fill. Fees charged in the base currency change the amount held (the dust
    this leaves is part of ``amount``); fees in another asset are passed converted to quote (``fee_quote``).
    The position arithmetic (average price, the amount closed) runs on the amount held, so that
    ``realized_pnl + unrealized_pnl(p) - fees`` is always the change of the account's value at price ``p``.
    """

    symbol: str
    amount: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0

    @property
    def is_flat(self) -> bool:
        return self.amount == 0.0

    def unrealized_pnl(self, price: float) -> float:
        return (price - self.avg_price) * self.amount if self.amount else 0.0

    def apply(self, fill: Fill, fee_quote: float | None = None) -> Position:
        """The position after ``fill``. ``fee_quote``: the fee valued in quote (default: the fee itself when
        charged in quote, ``fee × price`` when charged in base)."""
        if fill.symbol != self.symbol:
            raise ValueError(f"fill for {fill.symbol} applied to the {self.symbol} position")
        base, _, quote = fill.symbol.partition("/")
        quote = quote.split(":", 1)[0]
        if fill.fee_currency == base:
            fee_q = fill.fee * fill.price if fee_quote is None else fee_quote
            # the venue keeps the fee out of what it delivers (a buy) or takes it on top (a sell): the amount
            # held changes by the traded amount less the fee, and that is what is opened or closed
            d = fill.signed_amount - fill.fee
        elif fill.fee_currency == quote or fill.fee == 0.0:
            fee_q = fill.fee if fee_quote is None else fee_quote
            d = fill.signed_amount
        else:
            if fee_quote is None:
                raise ValueError(
                    f"fill {fill.trade_id}: the fee is charged in {fill.fee_currency}; pass its value in "
                    f"{quote} (fee_quote)"
                )
            fee_q = fee_quote
            d = fill.signed_amount
        old = self.amount
        new = old + d
        realized = self.realized_pnl
        avg = self.avg_price
        if old == 0.0 or (old > 0) != (d > 0):
            closing = min(abs(d), abs(old)) if old != 0.0 else 0.0
            realized += (fill.price - avg) * closing * (1 if old > 0 else -1)
            if abs(d) > abs(old):  # opens (or flips into) a new position at the fill price
                avg = fill.price
            elif abs(new) < 1e-15:
                avg = 0.0
        else:  # adds to the position
            avg = (avg * abs(old) + fill.price * abs(d)) / (abs(old) + abs(d))
        return replace(self, amount=new, avg_price=avg, realized_pnl=realized, fees=self.fees + fee_q)


def schema_problem(version: object, supported: int) -> str | None:
    """Why a file stating schema ``version`` cannot be read by code that reads versions up to ``supported``
    (``None``: it can). Files written before a format carried a version state none: pass ``1`` for them. The
    callers name the file and raise their own error with this text (stored results, the registry, news, runs)."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"schema_version {version!r} is not a version number"
    if version > supported:
        return (
            f"schema_version {version}; this workbench reads up to {supported} "
            "(written by a newer version: upgrade workbench)"
        )
    return None
