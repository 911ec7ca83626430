"""Feature sets declared as data (:class:`FeatureSpec`), built over Candles by :func:`build_features`,
and a :class:`Scaler` fitted on a training window.

A spec is a plain mapping, so it can live in YAML and be loaded with
``FeatureSpec.model_validate(yaml.safe_load(text))`` (this module does no I/O)::

    indicators:
      - {name: RSI, params: {timeperiod: [14, 28]}}
      - {name: MACD, outputs: [macdhist]}
      - {name: SMA, params: {timeperiod: 20}, input: volume}
    returns: [1, 5]
    lags: [1, 2]
    rolling:
      - {stat: std, column: ret_1, window: 20}
    calendar: [hour, dayofweek]
    patterns: [doji, engulfing]

Columns of :func:`build_features`, in this order (names are flat, stable and readable):

- ``ret_{k}``: log return over ``k`` bars, ``log(close_t / close_{t-k})``; NaN for the first ``k`` bars.
- indicators: ``{function}[_{output}][_{param}={value}...][_input={column}]``: the function name
  lower-cased; the output name for multi-output functions (alone when it starts with the function name,
  e.g. ``macdsignal``, else appended, e.g. ``bbands_upperband``); then every parameter written in the spec
  (broadcast or not) in TA-Lib's parameter order; then the input column when ``input`` is set.
  E.g. ``rsi_timeperiod=14``, ``macdhist``, ``bbands_lowerband_timeperiod=20_nbdevdn=1.5``,
  ``sma_timeperiod=20_input=volume``. Parameters left at TA-Lib's default do not appear.
- ``{column}_lag_{L}``: the value of a return or indicator column at bar ``t-L``, placed at bar ``t``,
  e.g. ``ret_1_lag_2``.
- ``roll_{stat}_{column}_{window}``: a rolling statistic over the last ``window`` bars ``t-window+1..t``
  of a candle column or of any column above, e.g. ``roll_std_ret_1_20``. ``std`` is the sample standard
  deviation (ddof=1), ``skew`` the bias-corrected sample skewness (pandas), ``zscore`` is
  ``(x_t - mean) / std`` over the same window (including ``x_t``). NaN until the window is full and
  wherever the window holds a NaN. (pandas rolling, not TA-Lib, because TA-Lib's running sums turn every
  later value into NaN after one NaN in the input.)
- ``{hour|dayofweek|month}_{sin|cos}``: ``sin/cos(2*pi*x/P)`` of the bar-open time in UTC, with
  ``hour = hour + minute/60`` (P=24), ``dayofweek`` Monday=0 (P=7), ``month = month - 1`` (P=12).
- ``cdl_{pattern}``: TA-Lib candle patterns (-100/0/100, some ±80/±200) as float64.

All columns are float64 on the candles' index. Warm-up bars are NaN, never filled: TA-Lib's own NaNs, and
for integer outputs (patterns, ``MAXINDEX``, ``HT_TRENDMODE``), which TA-Lib fills with 0, the first
``lookback`` bars are set to NaN here. Nothing looks ahead: the row at bar ``t`` depends only on
``candles[:t+1]``, so ``build_features(candles.iloc[:k], spec)`` equals ``build_features(candles,
spec).iloc[:k]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workbench.features.indicators import (
    _combinations,
    _compute,
    _function,
    _hint,
    _input_names,
    _resolve_params,
    output_column,
    pattern_names,
)
from workbench.types import CANDLE_COLUMNS

__all__ = [
    "CALENDAR_FIELDS",
    "ROLLING_STATS",
    "FeatureSpec",
    "IndicatorItem",
    "RollingItem",
    "Scaler",
    "build_features",
]

ROLLING_STATS = ("mean", "std", "min", "max", "zscore", "skew")
CALENDAR_FIELDS = {"hour": 24.0, "dayofweek": 7.0, "month": 12.0}

PositiveInt = Annotated[int, Field(strict=True, ge=1)]


def _fmt(value: Any) -> str:
    """A parameter value in a column name: ints as is, floats in shortest form (``2.0 -> 2``)."""
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def _unique(values: Sequence[Any], what: str) -> None:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{what}: {v!r} is listed twice")
        seen.add(v)


class IndicatorItem(BaseModel):
    """One TA-Lib function with its parameters (lists broadcast to every combination), an optional input
    column for single-series functions (default: TA-Lib's, usually ``close``) and an optional subset of its
    outputs (``macdhist``; default all)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    input: str | None = None
    outputs: list[str] | None = None

    @field_validator("name")
    @classmethod
    def _known_function(cls, v: str) -> str:
        return str(_function(v).info["name"])

    @model_validator(mode="after")
    def _check(self) -> IndicatorItem:
        func = _function(self.name)
        _resolve_params(func, self.params)
        if self.input is not None:
            if self.input not in CANDLE_COLUMNS:
                raise ValueError(
                    f"{self.name}: input {self.input!r} is not a candle column{_hint(self.input, CANDLE_COLUMNS)}; "
                    f"choose one of {', '.join(CANDLE_COLUMNS)}"
                )
            _input_names(func, pd.DataFrame(columns=list(CANDLE_COLUMNS)), self.input)
        self.columns()  # validates outputs
        return self

    def columns(self) -> list[tuple[dict[str, Any], str, str]]:
        """``(parameter combination, output, column name)`` for every column this item produces."""
        func = _function(self.name)
        resolved = _resolve_params(func, self.params)
        fname = self.name.lower()
        all_outputs = [output_column(self.name, o) for o in func.output_names]
        outputs = all_outputs
        if self.outputs is not None:
            outputs = []
            for o in self.outputs:
                low = output_column(self.name, o.lower())
                if low not in all_outputs:
                    raise ValueError(
                        f"{self.name}: unknown output {o!r}{_hint(o, all_outputs)}; outputs: {', '.join(all_outputs)}"
                    )
                outputs.append(low)
        out = []
        for combo in _combinations(resolved)[1]:
            suffix = "".join(f"_{k}={_fmt(v)}" for k, v in combo.items())
            if self.input is not None:
                suffix += f"_input={self.input}"
            for o in outputs:
                base = fname if o == fname else (o if o.startswith(fname) else f"{fname}_{o}")
                out.append((combo, o, base + suffix))
        return out


class RollingItem(BaseModel):
    """A rolling statistic (``mean|std|min|max|zscore|skew``) of ``column`` over ``window`` bars."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stat: str
    column: str
    window: Annotated[int, Field(strict=True, ge=2)]

    @field_validator("stat")
    @classmethod
    def _known_stat(cls, v: str) -> str:
        if v not in ROLLING_STATS:
            raise ValueError(
                f"unknown rolling stat {v!r}{_hint(v, ROLLING_STATS)}; choose one of {', '.join(ROLLING_STATS)}"
            )
        return v

    @model_validator(mode="after")
    def _skew_window(self) -> RollingItem:
        if self.stat == "skew" and self.window < 3:
            raise ValueError(f"rolling skew needs a window of at least 3 bars, got {self.window}")
        return self

    @property
    def name(self) -> str:
        return f"roll_{self.stat}_{self.column}_{self.window}"


class FeatureSpec(BaseModel):
    """A feature set as data; see the module docstring for the columns it yields and their names.

    Validated on construction (``FeatureSpec.model_validate(mapping)``): unknown functions, parameters,
    outputs, inputs, stats, calendar fields, patterns, rolling columns and duplicate column names are
    errors that name the bad entry, with did-you-mean hints.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    indicators: list[IndicatorItem] = Field(default_factory=list)
    returns: list[PositiveInt] = Field(default_factory=list)
    lags: list[PositiveInt] = Field(default_factory=list)
    rolling: list[RollingItem] = Field(default_factory=list)
    calendar: list[str] = Field(default_factory=list)
    patterns: bool | list[str] = False

    @field_validator("returns", "lags")
    @classmethod
    def _no_duplicates(cls, v: list[int], info: Any) -> list[int]:
        _unique(v, info.field_name)
        return v

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, v: list[str]) -> list[str]:
        for f in v:
            if f not in CALENDAR_FIELDS:
                raise ValueError(
                    f"unknown calendar field {f!r}{_hint(f, CALENDAR_FIELDS)}; choose from {', '.join(CALENDAR_FIELDS)}"
                )
        _unique(v, "calendar")
        return v

    @field_validator("patterns")
    @classmethod
    def _known_patterns(cls, v: bool | list[str]) -> bool | list[str]:
        if isinstance(v, list):
            _unique(pattern_names(v), "patterns")
        return v

    @model_validator(mode="after")
    def _check_columns(self) -> FeatureSpec:
        names = self.feature_names()
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise ValueError(f"feature column {n!r} is produced twice; remove the duplicate entry")
            seen.add(n)
        return self

    def _base_names(self) -> tuple[list[str], list[str]]:
        returns = [f"ret_{k}" for k in self.returns]
        indicators = [name for item in self.indicators for _, _, name in item.columns()]
        return returns, indicators

    def feature_names(self) -> list[str]:
        """The columns :func:`build_features` returns, in order, without computing anything."""
        returns, indicators = self._base_names()
        lagged = [f"{c}_lag_{lag}" for lag in self.lags for c in returns + indicators]
        available = [*CANDLE_COLUMNS, *returns, *indicators, *lagged]
        rolling = []
        for item in self.rolling:
            if item.column not in available:
                raise ValueError(
                    f"rolling {item.stat} over unknown column {item.column!r}{_hint(item.column, available)}; "
                    "it must be a candle column or a return, indicator or lag column of this spec"
                )
            rolling.append(item.name)
        calendar = [f"{f}_{t}" for f in self.calendar for t in ("sin", "cos")]
        patterns = [f"cdl_{fn[3:].lower()}" for fn in self._pattern_functions()]
        return [*returns, *indicators, *lagged, *rolling, *calendar, *patterns]

    def _pattern_functions(self) -> list[str]:
        if self.patterns is True:
            return pattern_names()
        if self.patterns is False:
            return []
        return pattern_names(self.patterns)


def _rolling(x: pd.Series, stat: str, window: int) -> np.ndarray:
    r = x.rolling(window, min_periods=window)
    if stat == "zscore":
        with np.errstate(invalid="ignore", divide="ignore"):
            return ((x - r.mean()) / r.std()).to_numpy("float64")
    return getattr(r, stat)().to_numpy("float64")


def build_features(candles: pd.DataFrame, spec: FeatureSpec | Mapping[str, Any]) -> pd.DataFrame:
    """The features of ``spec`` over ``candles``: float64 columns named as in the module docstring, on the
    candles' index, NaN during warm-up; the row at ``t`` uses only ``candles[:t+1]``."""
    if not isinstance(spec, FeatureSpec):
        spec = FeatureSpec.model_validate(spec)
    missing = [c for c in CANDLE_COLUMNS if c not in candles.columns]
    if missing:
        raise ValueError(f"build_features: candles lack column(s) {', '.join(missing)}")
    n = len(candles)
    cols: dict[str, np.ndarray] = {}
    close = candles["close"].to_numpy("float64")
    for k in spec.returns:
        r = np.full(n, np.nan)
        if n > k:
            r[k:] = np.log(close[k:] / close[:-k])
        cols[f"ret_{k}"] = r
    for item in spec.indicators:
        names = {(tuple(combo.items()), o): name for combo, o, name in item.columns()}
        _, _, results = _compute(item.name, candles, item.params, input=item.input, outputs=item.outputs)
        for res in results:
            values = res.values.astype("float64")
            if not np.issubdtype(res.values.dtype, np.floating):
                values[: res.warmup] = np.nan
            cols[names[(tuple(res.combo.items()), res.output)]] = values
    base = list(cols)
    for lag in spec.lags:
        for c in base:
            shifted = np.full(n, np.nan)
            if n > lag:
                shifted[lag:] = cols[c][:-lag]
            cols[f"{c}_lag_{lag}"] = shifted
    for item in spec.rolling:
        src = cols[item.column] if item.column in cols else candles[item.column].to_numpy("float64")
        cols[item.name] = _rolling(pd.Series(src), item.stat, item.window)
    if spec.calendar:
        idx = pd.DatetimeIndex(candles.index)
        idx = idx.tz_convert("UTC") if idx.tz is not None else idx
        values = {
            "hour": idx.hour.to_numpy("float64") + idx.minute.to_numpy("float64") / 60.0,
            "dayofweek": idx.day_of_week.to_numpy("float64"),
            "month": idx.month.to_numpy("float64") - 1.0,
        }
        for f in spec.calendar:
            angle = 2.0 * np.pi * values[f] / CALENDAR_FIELDS[f]
            cols[f"{f}_sin"] = np.sin(angle)
            cols[f"{f}_cos"] = np.cos(angle)
    for fn in spec._pattern_functions():
        _, _, (res,) = _compute(fn, candles, {})
        values = res.values.astype("float64")
        values[: res.warmup] = np.nan
        cols[f"cdl_{fn[3:].lower()}"] = values
    out = pd.DataFrame(cols, index=candles.index, dtype="float64")
    out.attrs = dict(candles.attrs)
    return out


ScalerMethod = Literal["standard", "robust", "minmax"]


class Scaler:
    """Column-wise scaling with statistics fitted on one window and applied unchanged to later data.

    Fit on the TRAINING window only, then apply the fitted scaler forward to validation, test and live
    data; fitting on data that includes the evaluation period leaks its mean/spread into the features.

    Methods (``x' = (x - center_) / scale_``):

    - ``'standard'``: center = mean, scale = population standard deviation (ddof=0);
    - ``'robust'``: center = median, scale = interquartile range (75th - 25th percentile, linear);
    - ``'minmax'``: center = min, scale = max - min (fit data maps onto [0, 1]).

    :meth:`fit` uses only rows without any NaN (warm-up rows are skipped). A scale of 0 (a constant column)
    becomes 1, so that column is only centred. :meth:`transform` keeps NaN as NaN and needs the fitted
    columns (in any order; extra columns are an error).

    Fitted attributes: ``center_`` and ``scale_`` (Series by column), ``columns_`` (Index),
    ``n_samples_`` (rows used by the fit).
    """

    def __init__(self, method: ScalerMethod = "standard") -> None:
        methods = ("standard", "robust", "minmax")
        if method not in methods:
            raise ValueError(
                f"unknown scaler method {method!r}{_hint(str(method), methods)}; choose one of {', '.join(methods)}"
            )
        self.method: ScalerMethod = method
        self.center_: pd.Series | None = None
        self.scale_: pd.Series | None = None
        self.columns_: pd.Index | None = None
        self.n_samples_: int = 0

    def __repr__(self) -> str:
        state = (
            f"fitted on {self.n_samples_} rows x {len(self.columns_)} columns"
            if self.columns_ is not None
            else "not fitted"
        )
        return f"Scaler({self.method!r}, {state})"

    def fit(self, X: pd.DataFrame) -> Scaler:
        """Fit the statistics on the rows of ``X`` that hold no NaN; returns self."""
        if not isinstance(X, pd.DataFrame):
            raise ValueError(f"Scaler.fit expects a DataFrame, got {type(X).__name__}")
        data = X.astype("float64").dropna(how="any")
        if data.empty:
            raise ValueError(
                f"Scaler.fit: no row of the {len(X)} given is free of NaN; drop the warm-up or all-NaN columns first"
            )
        if self.method == "standard":
            center, scale = data.mean(), data.std(ddof=0)
        elif self.method == "robust":
            center = data.median()
            scale = data.quantile(0.75) - data.quantile(0.25)
        else:
            center = data.min()
            scale = data.max() - center
        self.center_ = center.astype("float64")
        self.scale_ = scale.where(scale != 0, 1.0).astype("float64")
        self.columns_ = X.columns.copy()
        self.n_samples_ = len(data)
        return self

    def _check(self, X: pd.DataFrame) -> None:
        if self.columns_ is None:
            raise ValueError("Scaler is not fitted: call fit() on the training window first")
        if not isinstance(X, pd.DataFrame):
            raise ValueError(f"Scaler expects a DataFrame, got {type(X).__name__}")
        fitted = [str(c) for c in self.columns_]
        for c in self.columns_:
            if c not in X.columns:
                raise ValueError(
                    f"Scaler: column {c!r} was fitted but is missing{_hint(str(c), map(str, X.columns))}"
                )
        for c in X.columns:
            if c not in self.columns_:
                raise ValueError(f"Scaler: column {c!r} was not fitted{_hint(str(c), fitted)}")

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """``(X - center_) / scale_`` with the fitted statistics; columns in the fitted order."""
        self._check(X)
        assert self.center_ is not None and self.scale_ is not None and self.columns_ is not None
        X = X[self.columns_].astype("float64")
        return (X - self.center_) / self.scale_

    def inverse_transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Undo :meth:`transform`: ``X * scale_ + center_``."""
        self._check(X)
        assert self.center_ is not None and self.scale_ is not None and self.columns_ is not None
        X = X[self.columns_].astype("float64")
        return X * self.scale_ + self.center_

    def fit_transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Fit on ``X`` and transform it (use only on the training window)."""
        return self.fit(X).transform(X)
