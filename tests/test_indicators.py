"""workbench.features.indicators: exact agreement with direct TA-Lib calls on the real sample, broadcasting,
hinted errors, VWAP against a plain loop, candle patterns, and causality (prefix) properties."""

from __future__ import annotations

import inspect
from functools import cache

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from talib import abstract

from workbench.features import indicators as ind
from workbench.types import candles_from_frame

SAMPLE = "data/sample/binance/BTCUSDT_1h.csv.gz"


@cache
def candles() -> pd.DataFrame:
    from pathlib import Path

    path = Path(__file__).parent.parent / SAMPLE
    c = candles_from_frame(pd.read_csv(path), timeframe="1h", source=str(path))
    c.attrs.update(exchange="binance", symbol="BTC/USDT", timeframe="1h")
    return c


def arr(col: str) -> np.ndarray:
    return candles()[col].to_numpy()


# --- convenience wrappers equal direct TA-Lib calls --------------------------------------------------------


def test_convenience_wrappers_equal_talib() -> None:
    c = candles()
    o, h, lo, cl, v = (arr(k) for k in ("open", "high", "low", "close", "volume"))
    singles = {
        "sma": (ind.sma(c, 20), talib.SMA(cl, 20)),
        "ema": (ind.ema(c, 20), talib.EMA(cl, 20)),
        "rsi": (ind.rsi(c), talib.RSI(cl, 14)),
        "atr": (ind.atr(c, 10), talib.ATR(h, lo, cl, 10)),
        "adx": (ind.adx(c), talib.ADX(h, lo, cl, 14)),
        "obv": (ind.obv(c), talib.OBV(cl, v)),
    }
    for name, (got, want) in singles.items():
        assert isinstance(got, pd.Series) and got.name == name
        assert got.index.equals(c.index)
        assert_array_equal(got.to_numpy(), want)
    multi = {
        ("macd", "macdsignal", "macdhist"): (ind.macd(c, 8, 21, 5), talib.MACD(cl, 8, 21, 5)),
        ("upperband", "middleband", "lowerband"): (
            ind.bbands(c, 20, 2.5, 1.5, 1),
            talib.BBANDS(cl, 20, 2.5, 1.5, 1),
        ),
        ("slowk", "slowd"): (ind.stoch(c), talib.STOCH(h, lo, cl)),
    }
    for cols, (got, want) in multi.items():
        assert list(got.columns) == list(cols)
        for col, w in zip(cols, want, strict=True):
            assert_array_equal(got[col].to_numpy(), w)
    # input override and a plain Series
    assert_array_equal(ind.sma(c, 5, input="volume").to_numpy(), talib.SMA(v, 5))
    assert_array_equal(ind.rsi(c["open"], 7).to_numpy(), talib.RSI(o, 7))


@pytest.mark.parametrize(
    ("func", "name"),
    [
        (ind.sma, "SMA"),
        (ind.ema, "EMA"),
        (ind.rsi, "RSI"),
        (ind.macd, "MACD"),
        (ind.bbands, "BBANDS"),
        (ind.atr, "ATR"),
        (ind.adx, "ADX"),
        (ind.stoch, "STOCH"),
    ],
)
def test_wrapper_defaults_are_talib_defaults(func, name) -> None:
    defaults = {
        k: p.default
        for k, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty and k != "input"
    }
    assert defaults == dict(abstract.Function(name).parameters)


def _direct_args(name: str) -> list[np.ndarray]:
    args = []
    for value in abstract.Function(name).input_names.values():
        for col in [value] if isinstance(value, str) else value:
            args.append(arr(col))
    return args


@pytest.mark.parametrize("name", [f for f in talib.get_functions() if f != "MAVP"])
def test_every_function_with_defaults_equals_talib(name: str) -> None:
    got = ind.indicator(name, candles())
    want = getattr(talib, name)(*_direct_args(name))
    want = want if isinstance(want, tuple) else (want,)
    expected = [ind.output_column(name, o) for o in abstract.Function(name).output_names]
    assert list(got.columns) == expected
    for col, w in zip(got.columns, want, strict=True):
        assert got[col].dtype == w.dtype
        assert_array_equal(got[col].to_numpy(), w)


@pytest.mark.parametrize(
    ("name", "kwargs", "direct"),
    [
        ("RSI", {"timeperiod": 7}, lambda: talib.RSI(arr("close"), 7)),
        ("sma", {"input": "volume", "timeperiod": 12}, lambda: talib.SMA(arr("volume"), 12)),
        ("KAMA", {"input": "high", "timeperiod": 9}, lambda: talib.KAMA(arr("high"), 9)),
        ("CCI", {"timeperiod": 20}, lambda: talib.CCI(arr("high"), arr("low"), arr("close"), 20)),
        (
            "MFI",
            {"timeperiod": 10},
            lambda: talib.MFI(arr("high"), arr("low"), arr("close"), arr("volume"), 10),
        ),
        (
            "BETA",
            {"input": {"price0": "close", "price1": "open"}, "timeperiod": 30},
            lambda: talib.BETA(arr("close"), arr("open"), 30),
        ),
        ("STOCHRSI", {"timeperiod": 14, "fastk_period": 3}, lambda: talib.STOCHRSI(arr("close"), 14, 3)),
        ("MA", {"timeperiod": 15, "matype": 3}, lambda: talib.MA(arr("close"), 15, 3)),
        (
            "CDLMORNINGSTAR",
            {"penetration": 0.5},
            lambda: talib.CDLMORNINGSTAR(arr("open"), arr("high"), arr("low"), arr("close"), 0.5),
        ),
    ],
)
def test_indicator_sample_equals_talib(name, kwargs, direct) -> None:
    got = ind.indicator(name, candles(), **kwargs)
    want = direct()
    want = want if isinstance(want, tuple) else (want,)
    assert got.shape[1] == len(want)
    for col, w in zip(got.columns, want, strict=True):
        assert_array_equal(got[col].to_numpy(), w)


def test_extra_input_column_mavp() -> None:
    c = candles()
    periods = np.clip(arr("volume") % 10, 2, 10).astype("float64")
    got = ind.indicator("MAVP", c.assign(p=periods), input={"periods": "p"}, minperiod=2, maxperiod=10)
    assert_array_equal(got["mavp"].to_numpy(), talib.MAVP(arr("close"), periods, 2, 10))


def test_outputs_subset() -> None:
    got = ind.indicator("MACD", candles(), outputs=["macdhist", "macd"])
    assert list(got.columns) == ["macdhist", "macd"]
    assert_array_equal(got["macdhist"].to_numpy(), talib.MACD(arr("close"))[2])


# --- broadcasting ---------------------------------------------------------------------------------------------


def test_broadcast_cartesian_product() -> None:
    c = candles()
    got = ind.indicator("BBANDS", c, nbdevup=(1.5, 2.0), timeperiod=[10, 20, 30], matype=1)
    assert got.shape == (len(c), 3 * 2 * 3)
    assert isinstance(got.columns, pd.MultiIndex)
    # TA-Lib's parameter order, scalar matype adds no level
    assert got.columns.names == ["timeperiod", "nbdevup", "output"]
    assert list(got.columns[:4]) == [
        (10, 1.5, "upperband"),
        (10, 1.5, "middleband"),
        (10, 1.5, "lowerband"),
        (10, 2.0, "upperband"),
    ]
    for tp in (10, 20, 30):
        for up in (1.5, 2.0):
            single = ind.indicator("BBANDS", c, timeperiod=tp, nbdevup=up, matype=1)
            for out in ("upperband", "middleband", "lowerband"):
                assert_array_equal(got[(tp, up, out)].to_numpy(), single[out].to_numpy())


def test_broadcast_single_output_and_range() -> None:
    c = candles()
    got = ind.sma(c, range(5, 8))
    assert isinstance(got, pd.DataFrame)
    assert got.columns.names == ["timeperiod", "output"]
    assert list(got.columns) == [(5, "sma"), (6, "sma"), (7, "sma")]
    for tp in (5, 6, 7):
        assert_array_equal(got[(tp, "sma")].to_numpy(), talib.SMA(arr("close"), tp))
    arrays = ind.indicator("RSI", c, timeperiod=np.array([7, 14]))
    assert list(arrays.columns) == [(7, "rsi"), (14, "rsi")]
    one = ind.macd(c, fastperiod=[12])
    assert one.columns.names == ["fastperiod", "output"] and one.shape[1] == 3


# --- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: ind.indicator("RSII", c), r"unknown TA-Lib function 'RSII' \(did you mean 'RSI'"),
        (lambda c: ind.indicator("bband", c), r"did you mean 'BBANDS'"),
        (
            lambda c: ind.indicator("RSI", c, timeperiode=3),
            r"unknown parameter 'timeperiode' \(did you mean 'timeperiod'\?\); valid parameters .*timeperiod=14",
        ),
        (
            lambda c: ind.indicator("CDLDOJI", c, timeperiod=3),
            r"unknown parameter 'timeperiod'; valid parameters .*: none",
        ),
        (
            lambda c: ind.indicator("MACD", c, outputs=["signal"]),
            r"unknown output 'signal' \(did you mean 'macdsignal'",
        ),
        (lambda c: ind.indicator("BETA", c, input="close"), r"BETA takes several input series"),
        (lambda c: ind.atr(c["close"]), r"ATR takes several input series .*pass Candles, not a Series"),
        (lambda c: ind.indicator("SMA", c, input="volum"), r"needs column 'volum'.*did you mean 'volume'"),
        (lambda c: ind.indicator("BETA", c, input={"price": "close"}), r"unknown input 'price'"),
        (lambda c: ind.indicator("MAVP", c), r"needs column 'periods'"),
        (lambda c: ind.indicator("SMA", c, timeperiod=1.5), r"'timeperiod' must be an integer, got 1.5"),
        (lambda c: ind.indicator("SMA", c, timeperiod=True), r"'timeperiod' must be an integer"),
        (lambda c: ind.indicator("SMA", c, timeperiod=[]), r"empty list"),
        (
            lambda c: ind.indicator("SMA", c, timeperiod=-3),
            r"TA-Lib rejected SMA\(timeperiod=-3\).*BAD_PARAM",
        ),
        (
            lambda c: ind.functions("pattern"),
            r"unknown TA-Lib group 'pattern' \(did you mean 'Pattern Recognition'",
        ),
        (lambda c: ind.candle_patterns(c, ["dogi"]), r"unknown candle pattern 'dogi' \(did you mean 'doji'"),
        (lambda c: ind.vwap(c, anchor="fortnight"), r"invalid VWAP anchor 'fortnight'"),
        (lambda c: ind.vwap(c, window=0), r"window must be a positive integer"),
    ],
)
def test_errors_name_the_bad_thing(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call(candles())


def test_functions_and_groups() -> None:
    assert ind.functions() == list(talib.get_functions())
    patterns = ind.functions("Pattern Recognition")
    assert len(patterns) == 61 and all(p.startswith("CDL") for p in patterns)
    assert ind.functions("momentum indicators") == talib.get_function_groups()["Momentum Indicators"]
    assert ind.lookback("SMA", timeperiod=10) == 9
    assert ind.lookback("RSI") == 14


# --- warm-up convention ---------------------------------------------------------------------------------------


def test_ema_is_sma_seeded_and_nan_during_warmup() -> None:
    c = candles()
    e = ind.ema(c, 10).to_numpy()
    assert np.isnan(e[:9]).all() and not np.isnan(e[9:]).any()
    assert e[9] == pytest.approx(arr("close")[:10].mean(), rel=1e-14)
    ewm = c["close"].ewm(span=10, adjust=False).mean().to_numpy()
    assert abs(e[9] - ewm[9]) > 1.0  # differs during the warm-up ...
    np.testing.assert_allclose(e[500:], ewm[500:], rtol=1e-12)  # ... and the difference decays away


# --- VWAP -------------------------------------------------------------------------------------------------------


def _vwap_loop(c: pd.DataFrame, window: int | None, key) -> np.ndarray:
    h, lo, cl, v = (c[k].tolist() for k in ("high", "low", "close", "volume"))
    tp = [(h[i] + lo[i] + cl[i]) / 3.0 for i in range(len(c))]
    out = []
    num = den = 0.0
    for t in range(len(c)):
        if window is not None:
            if t < window - 1:
                out.append(np.nan)
                continue
            rows = range(t - window + 1, t + 1)
            num = sum(tp[i] * v[i] for i in rows)
            den = sum(v[i] for i in rows)
        else:
            if t > 0 and key(c.index[t - 1]) != key(c.index[t]):
                num = den = 0.0  # a new session starts at bar t
            num += tp[t] * v[t]
            den += v[t]
        out.append(num / den if den else np.nan)
    return np.array(out)


@pytest.mark.parametrize(
    ("window", "anchor", "key"),
    [
        (24, "D", None),
        (7, None, None),
        (None, "D", lambda ts: ts.date()),
        (None, "4h", lambda ts: (ts.date(), ts.hour // 4)),
        (None, "W", lambda ts: ts.isocalendar()[:2]),
        (None, "M", lambda ts: (ts.year, ts.month)),
        (None, None, lambda ts: 0),
    ],
)
def test_vwap_equals_plain_loop(window, anchor, key) -> None:
    c = candles().iloc[:1500]
    got = ind.vwap(c, window=window, anchor=anchor)
    assert got.name == "vwap" and got.dtype == np.float64 and got.index.equals(c.index)
    want = _vwap_loop(c, window, key)
    assert_array_equal(np.isnan(got.to_numpy()), np.isnan(want))
    np.testing.assert_allclose(got.to_numpy(), want, rtol=1e-12)


def test_vwap_zero_volume_is_nan() -> None:
    c = candles().iloc[:10].copy()
    c.loc[c.index[:3], "volume"] = 0.0
    got = ind.vwap(c, window=2).to_numpy()
    assert np.isnan(got[:3]).all() and np.isfinite(got[3:]).all()


# --- candle patterns ----------------------------------------------------------------------------------------------


def test_candle_patterns_all_and_subset() -> None:
    c = candles()
    got = ind.candle_patterns(c)
    assert got.shape == (len(c), 61) and (got.dtypes == np.int16).all()
    assert "doji" in got.columns and "engulfing" in got.columns
    for fn in ind.functions("Pattern Recognition"):
        want = getattr(talib, fn)(*(arr(k) for k in ("open", "high", "low", "close")))
        assert_array_equal(got[fn[3:].lower()].to_numpy(), want)
    assert set(np.unique(got.to_numpy())) <= {-200, -100, -80, 0, 80, 100, 200}
    sub = ind.candle_patterns(c, ["doji", "CDLHAMMER", "cdlEngulfing"])
    assert list(sub.columns) == ["doji", "hammer", "engulfing"]


# --- causality: a prefix of the candles gives a prefix of the result ------------------------------------------------

CAUSAL = {
    "sma": lambda c: ind.sma(c, [5, 30]),
    "ema": lambda c: ind.ema(c, 20),
    "rsi": lambda c: ind.rsi(c, 14),
    "macd": lambda c: ind.macd(c),
    "bbands": lambda c: ind.bbands(c, 20),
    "atr": lambda c: ind.atr(c),
    "adx": lambda c: ind.adx(c),
    "stoch": lambda c: ind.stoch(c),
    "obv": lambda c: ind.obv(c),
    "vwap_window": lambda c: ind.vwap(c, window=24),
    "vwap_day": lambda c: ind.vwap(c, anchor="D"),
    "vwap_week": lambda c: ind.vwap(c, anchor="W"),
    "ht_sine": lambda c: ind.indicator("HT_SINE", c),
    "patterns": lambda c: ind.candle_patterns(c),
}


@cache
def _full(name: str) -> pd.DataFrame | pd.Series:
    return CAUSAL[name](candles())


@settings(max_examples=40, deadline=None)
@given(k=st.integers(min_value=1, max_value=5980), name=st.sampled_from(sorted(CAUSAL)))
def test_indicators_are_causal(k: int, name: str) -> None:
    c = candles()
    k = min(k, len(c))
    part = CAUSAL[name](c.iloc[:k])
    full = _full(name).iloc[:k]
    np.testing.assert_allclose(
        part.to_numpy(dtype="float64"), full.to_numpy(dtype="float64"), rtol=1e-9, atol=0
    )
