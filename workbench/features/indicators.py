"""Technical indicators over Candles: any TA-Lib function, with vectorbt-style parameter broadcasting.

Conventions (every function in this module):

- **Input**: Candles (a DataFrame with a UTC ``DatetimeIndex`` named ``time`` of bar-open times and float64
  columns ``open, high, low, close, volume``; see :mod:`workbench.types`). TA-Lib's inputs are taken from
  the columns of the same name (``price='close'``, ``prices=['high', 'low', 'close']``, ...). Any other column
  of the frame may be chosen with ``input=``. A single-series function (SMA, RSI, ...) also accepts a Series.
- **Output**: a DataFrame on the same index as the input. Columns are TA-Lib's output names, lower-cased,
  with TA-Lib's generic ``real`` / ``integer`` replaced by the function name lower-cased
  (``SMA -> sma``, ``MACD -> macd, macdsignal, macdhist``, ``CDLDOJI -> cdldoji``). Values and dtypes are
  exactly TA-Lib's (float64; int32 for the few integer outputs such as patterns and ``MAXINDEX``).
- **Broadcasting** (like vectorbt's TA-Lib indicator factory with ``param_product=True``): a parameter given
  as a list, tuple, range or 1-d array is expanded, and every combination of the expanded parameters (the
  cartesian product) is computed. The columns are then a MultiIndex with one level per broadcast
  parameter (named after it, in TA-Lib's parameter order; values as int or float, the type of
  TA-Lib's default) and a last level ``output``.
  Scalar parameters add no level. Without broadcast parameters the columns are flat output names.
- **Causality**: the value at bar ``t`` depends only on bars ``0..t`` (``candles[:t+1]``). TA-Lib computes
  forward from the first bar, so an indicator of ``candles[:k]`` equals the first ``k`` rows of the
  indicator of the full candles, bit for bit, also for the recursive (EMA-type) ones.
- **Warm-up**: the first ``lookback`` bars (TA-Lib's ``lookback`` for the parameters, e.g. ``timeperiod - 1``
  for SMA, ``timeperiod`` for RSI) are NaN and are never filled. TA-Lib seeds EMA-type indicators (EMA,
  MACD, RSI, ATR, ADX, ...) with the simple average of the first ``period`` values, so during (and for a
  while after) the warm-up their values differ from ``pandas.Series.ewm``, which starts at the first value;
  the difference decays geometrically. Indicators that TA-Lib flags as having an "unstable period"
  (EMA-type, HT_*) depend on where the series starts: the same bar can have different values in two
  series that start on different bars. Integer outputs (candle patterns, ``MAXINDEX``) cannot hold NaN;
  TA-Lib returns 0 during their warm-up (see :func:`lookback`). Results assume TA-Lib's process-wide
  settings (``talib.set_unstable_period``, ``set_compatibility``) are left at their defaults.
- **Index functions** (``MAXINDEX``, ``MININDEX``, ``MINMAXINDEX``) return absolute positions in the input
  array (0-based from its first bar), not "bars ago": the same bar gets different values when the series
  starts elsewhere.
- **Candle patterns** are -100/0/+100 (bearish/none/bullish), some patterns also give ±80 or ±200
  ("confirmed" signals, e.g. CDLHIKKAKE), so :func:`candle_patterns` uses int16, not int8.

VWAP is not in TA-Lib; :func:`vwap` implements the rolling and session-anchored forms.
"""

from __future__ import annotations

import difflib
import functools
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import talib
from pandas.tseries.frequencies import to_offset
from talib import abstract

__all__ = [
    "adx",
    "atr",
    "bbands",
    "candle_patterns",
    "ema",
    "functions",
    "indicator",
    "lookback",
    "macd",
    "obv",
    "rsi",
    "sma",
    "stoch",
    "vwap",
]

_BROADCAST_TYPES = (list, tuple, range, np.ndarray)
_GENERIC_OUTPUTS = ("real", "integer")
_SERIES_COLUMN = "__series__"
OUTPUT_LEVEL = "output"

ParamValue = int | float | Sequence[int] | Sequence[float] | range


def _hint(bad: str, choices: Iterable[str], *, n: int = 3) -> str:
    """``" (did you mean 'X' or 'Y'?)"`` for the closest of ``choices``, or ``""``."""
    choices = list(choices)
    lower = {c.lower(): c for c in choices}
    key = bad.strip().lower()
    close = [c for c in lower if len(key) >= 3 and key in c][:n] or difflib.get_close_matches(
        key, list(lower), n=n, cutoff=0.6
    )
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(lower[c]) for c in close) + "?)"


@functools.cache
def _all_functions() -> list[str]:
    return list(talib.get_functions())


@functools.cache
def _function_set() -> frozenset[str]:
    return frozenset(_all_functions())


def _function(name: str) -> abstract.Function:
    """The TA-Lib abstract function ``name`` (case-insensitive); ValueError with a hint if unknown.

    Shared and cached: read its ``info`` and output names only; runs use a fresh ``abstract.Function``."""
    if not isinstance(name, str):
        raise ValueError(f"TA-Lib function name must be a string, got {name!r}")
    upper = name.strip().upper()
    if upper not in _function_set():
        raise ValueError(
            f"unknown TA-Lib function {name!r}{_hint(upper, _all_functions())}; "
            "workbench.features.functions() lists them"
        )
    return _cached_function(upper)


@functools.cache
def _cached_function(upper: str) -> abstract.Function:
    return abstract.Function(upper)


def output_column(func_name: str, output: str) -> str:
    """Our column name for TA-Lib output ``output`` of ``func_name`` (``real``/``integer`` -> function)."""
    return func_name.lower() if output in _GENERIC_OUTPUTS else output.lower()


def _check_param_value(func: str, param: str, default: Any, value: Any) -> int | float:
    """One scalar parameter value, checked against the type of TA-Lib's default (int or float)."""
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{func}: parameter {param!r} must be an integer, got {value!r}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{func}: parameter {param!r} must be a number, got {value!r}")
    return float(value)


def _resolve_params(func: abstract.Function, params: Mapping[str, Any]) -> dict[str, list[Any] | Any]:
    """Validate ``params`` against ``func``; returns them in TA-Lib's order, broadcast ones as lists."""
    name = func.info["name"]
    defaults: Mapping[str, Any] = func.info["parameters"]
    out: dict[str, Any] = {}
    for key in params:
        if key not in defaults:
            valid = ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "none"
            raise ValueError(
                f"{name}: unknown parameter {key!r}{_hint(key, defaults)}; valid parameters (with defaults): {valid}"
            )
    for key, default in defaults.items():
        if key not in params:
            continue
        value = params[key]
        if isinstance(value, _BROADCAST_TYPES):
            values = list(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else list(value)
            if not values:
                raise ValueError(f"{name}: parameter {key!r} is an empty list; give at least one value")
            out[key] = [_check_param_value(name, key, default, v) for v in values]
        else:
            out[key] = _check_param_value(name, key, default, value)
    return out


def _combinations(params: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Broadcast parameter names, and every combination (cartesian product) as full parameter dicts."""
    broadcast = [k for k, v in params.items() if isinstance(v, list)]
    scalars = {k: v for k, v in params.items() if not isinstance(v, list)}
    combos = []
    for values in itertools.product(*(params[k] for k in broadcast)):
        combo = dict(scalars)
        combo.update(zip(broadcast, values, strict=True))
        combos.append({k: combo[k] for k in params})  # TA-Lib order
    return broadcast, combos


def _input_names(
    func: abstract.Function, frame: pd.DataFrame, input: str | Mapping[str, str | Sequence[str]] | None
) -> dict[str, str | list[str]]:
    """TA-Lib's input-name mapping (``{'price': 'close'}``), with the ``input=`` override applied."""
    name = func.info["name"]
    names: dict[str, str | list[str]] = {
        k: (list(v) if isinstance(v, list | tuple) else v) for k, v in func.info["input_names"].items()
    }
    if input is None:
        pass
    elif isinstance(input, str):
        slots = [k for k, v in names.items() if not isinstance(v, list) or len(v) == 1]
        if len(names) != 1 or not slots:
            shown = ", ".join(f"{k}={v!r}" for k, v in names.items())
            raise ValueError(
                f"{name} takes several input series ({shown}); input='{input}' applies only to "
                f"single-series functions: pass a mapping such as input={{{next(iter(names))!r}: ...}}"
            )
        key = slots[0]
        names[key] = [input] if isinstance(names[key], list) else input
    elif isinstance(input, Mapping):
        for key, value in input.items():
            if key not in names:
                raise ValueError(
                    f"{name}: unknown input {key!r}{_hint(key, names)}; its inputs are "
                    + ", ".join(f"{k}={v!r}" for k, v in names.items())
                )
            if isinstance(names[key], list):
                cols = [value] if isinstance(value, str) else list(value)
                if len(cols) != len(names[key]):
                    raise ValueError(f"{name}: input {key!r} takes {len(names[key])} columns, got {value!r}")
                names[key] = cols
            elif not isinstance(value, str):
                raise ValueError(f"{name}: input {key!r} takes one column name, got {value!r}")
            else:
                names[key] = value
    else:
        raise ValueError(f"{name}: input must be a column name or a mapping, got {input!r}")
    for key, value in names.items():
        for col in [value] if isinstance(value, str) else value:
            if col not in frame.columns:
                raise ValueError(
                    f"{name}: input {key!r} needs column {col!r}, which the frame lacks{_hint(col, map(str, frame.columns))}; "
                    f"columns: {', '.join(map(str, frame.columns))}"
                    + (f"; choose one with input={{{key!r}: ...}}" if col == key else "")
                )
    return names


def _as_frame(candles: pd.DataFrame | pd.Series, input: Any) -> tuple[pd.DataFrame, Any]:
    if isinstance(candles, pd.Series):
        if input is not None:
            raise ValueError("input= selects a column of a DataFrame; it cannot be used with a Series")
        return candles.to_frame(_SERIES_COLUMN), _SERIES_COLUMN
    if not isinstance(candles, pd.DataFrame):
        raise ValueError(f"expected Candles (a DataFrame) or a Series, got {type(candles).__name__}")
    return candles, input


@dataclass(frozen=True, slots=True)
class _Result:
    """One computed output of one parameter combination (used by :mod:`workbench.features.spec`)."""

    combo: dict[str, Any]
    output: str
    values: np.ndarray
    warmup: int  # leading bars that are warm-up (NaN for float outputs, 0 for integer outputs)


def _compute(
    name: str,
    candles: pd.DataFrame | pd.Series,
    params: Mapping[str, Any],
    *,
    input: str | Mapping[str, str | Sequence[str]] | None = None,
    outputs: Sequence[str] | None = None,
) -> tuple[str, list[str], list[_Result]]:
    """Run TA-Lib function ``name`` for every parameter combination; (function name, broadcast names, results)."""
    func = _function(name)
    fname = func.info["name"]
    if isinstance(candles, pd.Series):
        slots = list(func.info["input_names"].values())
        if len(slots) != 1 or (isinstance(slots[0], list | tuple) and len(slots[0]) != 1):
            raise ValueError(
                f"{fname} takes several input series ({', '.join(map(repr, slots))}); pass Candles, not a Series"
            )
    frame, input = _as_frame(candles, input)
    resolved = _resolve_params(func, params)
    broadcast, combos = _combinations(resolved)
    names = _input_names(func, frame, input)
    all_outputs = [output_column(fname, o) for o in func.output_names]
    if outputs is None:
        chosen = list(range(len(all_outputs)))
    else:
        if isinstance(outputs, str):
            outputs = [outputs]
        chosen = []
        for o in outputs:
            low = str(o).lower()
            if low in all_outputs:
                chosen.append(all_outputs.index(low))
            elif low in [x.lower() for x in func.output_names]:
                chosen.append([x.lower() for x in func.output_names].index(low))
            else:
                raise ValueError(
                    f"{fname}: unknown output {o!r}{_hint(low, all_outputs)}; outputs: {', '.join(all_outputs)}"
                )
    cols = {c for v in names.values() for c in ([v] if isinstance(v, str) else v)}
    arrays = {c: np.ascontiguousarray(frame[c].to_numpy(dtype="float64")) for c in cols}
    lead = 0
    for arr in arrays.values():
        finite = np.flatnonzero(~np.isnan(arr))
        lead = max(lead, int(finite[0]) if finite.size else len(arr))
    results: list[_Result] = []
    for combo in combos:
        f = abstract.Function(fname)
        f.set_input_names(names)
        f.set_parameters(combo)
        try:
            out = f.run(arrays)
        except Exception as e:  # TA-Lib raises bare Exception for TA_BAD_PARAM
            shown = ", ".join(f"{k}={v!r}" for k, v in combo.items())
            defaults = ", ".join(f"{k}={v!r}" for k, v in func.info["parameters"].items())
            raise ValueError(
                f"TA-Lib rejected {fname}({shown}): {e}; parameters (with defaults): {defaults}"
            ) from e
        out = out if isinstance(out, list) else [out]
        warmup = min(len(frame), lead + int(f.lookback))
        for i in chosen:
            results.append(_Result(combo, all_outputs[i], out[i], warmup))
    return fname, broadcast, results


def indicator(
    name: str,
    candles: pd.DataFrame | pd.Series,
    *,
    input: str | Mapping[str, str | Sequence[str]] | None = None,
    outputs: Sequence[str] | None = None,
    **params: ParamValue,
) -> pd.DataFrame:
    """Any TA-Lib function ``name`` (case-insensitive) over ``candles``; see the module docstring.

    ``input``: a column name to feed a single-series function (``indicator('SMA', c, input='volume')``), or a
    mapping of TA-Lib input names to columns (``input={'price0': 'close', 'price1': 'open'}``).
    ``outputs``: a subset of the output columns to return. ``params``: TA-Lib parameters; lists, tuples and
    ranges broadcast (cartesian product) and give MultiIndex columns ``(*broadcast params, 'output')``.

    Unknown function, parameter, output or column: ValueError naming it, with did-you-mean hints.
    """
    _, broadcast, results = _compute(name, candles, params, input=input, outputs=outputs)
    index = candles.index
    data = {i: r.values for i, r in enumerate(results)}
    df = pd.DataFrame(data, index=index)
    if broadcast:
        tuples = [(*(r.combo[k] for k in broadcast), r.output) for r in results]
        df.columns = pd.MultiIndex.from_tuples(tuples, names=[*broadcast, OUTPUT_LEVEL])
    else:
        df.columns = pd.Index([r.output for r in results])
    return df


def lookback(name: str, **params: int | float) -> int:
    """TA-Lib's lookback of ``name`` with scalar ``params``: the number of leading warm-up bars."""
    func = _function(name)
    resolved = _resolve_params(func, params)
    if any(isinstance(v, list) for v in resolved.values()):
        raise ValueError(f"lookback({func.info['name']}): give scalar parameters, not lists")
    fresh = abstract.Function(func.info["name"])  # the cached one is shared: never mutate it
    fresh.set_parameters(resolved)
    return int(fresh.lookback)


def functions(group: str | None = None) -> list[str]:
    """TA-Lib function names, all of them or those of ``group`` (e.g. ``'Momentum Indicators'``,
    ``'Pattern Recognition'``; case-insensitive). Unknown group: ValueError with a hint."""
    if group is None:
        return _all_functions()
    groups = talib.get_function_groups()
    by_lower = {g.lower(): g for g in groups}
    key = by_lower.get(group.strip().lower())
    if key is None:
        raise ValueError(f"unknown TA-Lib group {group!r}{_hint(group, groups)}; groups: {', '.join(groups)}")
    return list(groups[key])


def _squeeze(df: pd.DataFrame) -> pd.Series | pd.DataFrame:
    """A single flat output column becomes a Series named after it."""
    if df.shape[1] == 1 and not isinstance(df.columns, pd.MultiIndex):
        return df.iloc[:, 0]
    return df


def sma(
    candles: pd.DataFrame | pd.Series, timeperiod: int | Sequence[int] = 30, *, input: str | None = None
) -> pd.Series | pd.DataFrame:
    """Simple moving average (TA-Lib SMA) of ``input`` (default ``close``). Series ``sma`` or, with a
    list of periods, a DataFrame with columns ``(timeperiod, output)``."""
    return _squeeze(indicator("SMA", candles, input=input, timeperiod=timeperiod))


def ema(
    candles: pd.DataFrame | pd.Series, timeperiod: int | Sequence[int] = 30, *, input: str | None = None
) -> pd.Series | pd.DataFrame:
    """Exponential moving average (TA-Lib EMA, alpha = 2/(timeperiod+1), seeded with the SMA of the first
    ``timeperiod`` values; NaN before). Series ``ema`` or a broadcast DataFrame."""
    return _squeeze(indicator("EMA", candles, input=input, timeperiod=timeperiod))


def rsi(
    candles: pd.DataFrame | pd.Series, timeperiod: int | Sequence[int] = 14, *, input: str | None = None
) -> pd.Series | pd.DataFrame:
    """Relative strength index (TA-Lib RSI, Wilder smoothing; first value at bar ``timeperiod``)."""
    return _squeeze(indicator("RSI", candles, input=input, timeperiod=timeperiod))


def macd(
    candles: pd.DataFrame | pd.Series,
    fastperiod: int | Sequence[int] = 12,
    slowperiod: int | Sequence[int] = 26,
    signalperiod: int | Sequence[int] = 9,
    *,
    input: str | None = None,
) -> pd.DataFrame:
    """MACD (TA-Lib): columns ``macd, macdsignal, macdhist``; all NaN for the first
    ``slowperiod + signalperiod - 2`` bars (TA-Lib aligns the MACD line with its signal)."""
    return indicator(
        "MACD", candles, input=input, fastperiod=fastperiod, slowperiod=slowperiod, signalperiod=signalperiod
    )


def bbands(
    candles: pd.DataFrame | pd.Series,
    timeperiod: int | Sequence[int] = 20,
    nbdevup: float | Sequence[float] = 2.0,
    nbdevdn: float | Sequence[float] = 2.0,
    matype: int | Sequence[int] = 0,
    *,
    input: str | None = None,
) -> pd.DataFrame:
    """Bollinger bands (TA-Lib BBANDS, population standard deviation): columns ``upperband, middleband,
    lowerband``."""
    return indicator(
        "BBANDS",
        candles,
        input=input,
        timeperiod=timeperiod,
        nbdevup=nbdevup,
        nbdevdn=nbdevdn,
        matype=matype,
    )


def atr(candles: pd.DataFrame, timeperiod: int | Sequence[int] = 14) -> pd.Series | pd.DataFrame:
    """Average true range (TA-Lib ATR, Wilder smoothing) from high, low, close."""
    return _squeeze(indicator("ATR", candles, timeperiod=timeperiod))


def adx(candles: pd.DataFrame, timeperiod: int | Sequence[int] = 14) -> pd.Series | pd.DataFrame:
    """Average directional index (TA-Lib ADX; first value at bar ``2 * timeperiod - 1``)."""
    return _squeeze(indicator("ADX", candles, timeperiod=timeperiod))


def stoch(
    candles: pd.DataFrame,
    fastk_period: int | Sequence[int] = 5,
    slowk_period: int | Sequence[int] = 3,
    slowk_matype: int | Sequence[int] = 0,
    slowd_period: int | Sequence[int] = 3,
    slowd_matype: int | Sequence[int] = 0,
) -> pd.DataFrame:
    """Slow stochastic (TA-Lib STOCH) from high, low, close: columns ``slowk, slowd``."""
    return indicator(
        "STOCH",
        candles,
        fastk_period=fastk_period,
        slowk_period=slowk_period,
        slowk_matype=slowk_matype,
        slowd_period=slowd_period,
        slowd_matype=slowd_matype,
    )


def obv(candles: pd.DataFrame) -> pd.Series:
    """On-balance volume (TA-Lib OBV) from close and volume; starts at the first bar's volume."""
    out = indicator("OBV", candles)
    return out.iloc[:, 0]


def _session_keys(index: pd.DatetimeIndex, anchor: str) -> np.ndarray:
    """An integer per bar that changes exactly when a new UTC ``anchor`` period starts."""
    utc = index.tz_convert("UTC") if index.tz is not None else index
    try:
        nanos = to_offset(anchor).nanos  # fixed length: 'D', 'h', '4h', '15min' (aligned to the epoch)
    except ValueError:
        nanos = None
    except Exception as e:
        raise ValueError(
            f"invalid VWAP anchor {anchor!r}: expected a pandas frequency such as 'D', '4h', 'W', 'M'"
        ) from e
    if nanos is not None:
        return utc.as_unit("ns").asi8 // int(nanos)
    try:
        periods = utc.tz_localize(None).to_period(anchor)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"invalid VWAP anchor {anchor!r}: expected a pandas frequency such as 'D', '4h', 'W', 'M'"
        ) from e
    return periods.asi8


def vwap(candles: pd.DataFrame, window: int | None = None, anchor: str | None = "D") -> pd.Series:
    """Volume-weighted average price of the typical price ``(high + low + close) / 3``. Not in TA-Lib.

    - ``window`` given: rolling VWAP over the last ``window`` bars, ``t-window+1..t``
      (``sum(tp * volume) / sum(volume)``); NaN for the first ``window - 1`` bars. ``anchor`` is then not used.
    - ``window`` None and ``anchor`` given: session VWAP, cumulative from the first bar of the current UTC
      ``anchor`` period (``'D'`` resets at 00:00 UTC; fixed lengths such as ``'4h'`` are aligned to the
      epoch; ``'W'`` weeks start on Monday, ``'M'`` months on the 1st) up to and including bar ``t``.
    - both None: cumulative VWAP from the first bar.

    Causal: the value at ``t`` uses bars up to ``t`` only. Where the summed volume is 0, the VWAP is NaN.
    Returns a float64 Series named ``vwap`` on the candles' index.
    """
    high, low, close = (candles[k].to_numpy("float64") for k in ("high", "low", "close"))
    tp = (high + low + close) / 3.0
    vol = candles["volume"].to_numpy("float64")
    pv = pd.Series(tp * vol, index=candles.index)
    v = pd.Series(vol, index=candles.index)
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
            raise ValueError(f"vwap: window must be a positive integer number of bars, got {window!r}")
        num = pv.rolling(int(window), min_periods=int(window)).sum()
        den = v.rolling(int(window), min_periods=int(window)).sum()
    elif anchor is not None:
        keys = _session_keys(pd.DatetimeIndex(candles.index), anchor)
        num = pv.groupby(keys).cumsum()
        den = v.groupby(keys).cumsum()
    else:
        num, den = pv.cumsum(), v.cumsum()
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num.to_numpy() / den.to_numpy()
    out[den.to_numpy() == 0] = np.nan
    return pd.Series(out, index=candles.index, name="vwap", dtype="float64")


def _pattern_function(name: str) -> str:
    patterns = functions("Pattern Recognition")
    upper = name.strip().upper()
    full = upper if upper.startswith("CDL") else "CDL" + upper
    if full not in patterns:
        short = [p[3:].lower() for p in patterns]
        raise ValueError(f"unknown candle pattern {name!r}{_hint(name.lower().removeprefix('cdl'), short)}")
    return full


def pattern_names(names: Sequence[str] | None = None) -> list[str]:
    """TA-Lib pattern function names (``CDLDOJI``) for ``names`` given as ``doji``/``CDLDOJI``; all if None."""
    if names is None:
        return functions("Pattern Recognition")
    if isinstance(names, str):
        names = [names]
    return [_pattern_function(n) for n in names]


def candle_patterns(candles: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
    """TA-Lib candlestick patterns (all 61 CDL* functions, or ``names``: ``'doji'`` or ``'CDLDOJI'``).

    Columns: the pattern name lower-cased without the ``CDL`` prefix (``doji``, ``engulfing``), int16 values
    -100/0/100 (bearish/none/bullish; some patterns give ±80 or ±200). TA-Lib gives 0 during a pattern's
    warm-up (its ``lookback``, e.g. 10 bars for DOJI's average body), not NaN.
    """
    o, h, lo, c = (
        np.ascontiguousarray(candles[k].to_numpy("float64")) for k in ("open", "high", "low", "close")
    )
    data = {fn[3:].lower(): getattr(talib, fn)(o, h, lo, c).astype("int16") for fn in pattern_names(names)}
    return pd.DataFrame(data, index=candles.index)
