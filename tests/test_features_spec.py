"""workbench.features.spec: FeatureSpec validation and naming, build_features values and causality, Scaler."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest
import talib
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from workbench.features import FeatureSpec, Scaler, build_features
from workbench.types import candles_from_frame

SAMPLE = Path(__file__).parent.parent / "data" / "sample" / "binance" / "BTCUSDT_1h.csv.gz"

SPEC_YAML = """
indicators:
  - {name: RSI, params: {timeperiod: [14, 28]}}
  - {name: macd, outputs: [macdhist]}
  - {name: SMA, params: {timeperiod: 20}, input: volume}
  - {name: BBANDS, params: {timeperiod: 20, nbdevdn: 1.5}}
  - {name: MAXINDEX, params: {timeperiod: 10}}
  - {name: HT_SINE}
returns: [1, 5]
lags: [1, 3]
rolling:
  - {stat: std, column: ret_1, window: 20}
  - {stat: mean, column: volume, window: 10}
  - {stat: min, column: rsi_timeperiod=14, window: 5}
  - {stat: max, column: ret_1_lag_1, window: 5}
  - {stat: zscore, column: close, window: 24}
  - {stat: skew, column: ret_1, window: 30}
calendar: [hour, dayofweek, month]
patterns: [doji, engulfing, hikkake]
"""


@cache
def candles() -> pd.DataFrame:
    c = candles_from_frame(pd.read_csv(SAMPLE), timeframe="1h", source=str(SAMPLE))
    c.attrs.update(exchange="binance", symbol="BTC/USDT", timeframe="1h")
    return c


@cache
def spec() -> FeatureSpec:
    return FeatureSpec.model_validate(yaml.safe_load(SPEC_YAML))


@cache
def full() -> pd.DataFrame:
    return build_features(candles(), spec())


def test_names_are_flat_stable_and_readable() -> None:
    assert spec().feature_names() == [
        "ret_1",
        "ret_5",
        "rsi_timeperiod=14",
        "rsi_timeperiod=28",
        "macdhist",
        "sma_timeperiod=20_input=volume",
        "bbands_upperband_timeperiod=20_nbdevdn=1.5",
        "bbands_middleband_timeperiod=20_nbdevdn=1.5",
        "bbands_lowerband_timeperiod=20_nbdevdn=1.5",
        "maxindex_timeperiod=10",
        "ht_sine_sine",
        "ht_sine_leadsine",
        *[
            f"{c}_lag_{lag}"
            for lag in (1, 3)
            for c in [
                "ret_1",
                "ret_5",
                "rsi_timeperiod=14",
                "rsi_timeperiod=28",
                "macdhist",
                "sma_timeperiod=20_input=volume",
                "bbands_upperband_timeperiod=20_nbdevdn=1.5",
                "bbands_middleband_timeperiod=20_nbdevdn=1.5",
                "bbands_lowerband_timeperiod=20_nbdevdn=1.5",
                "maxindex_timeperiod=10",
                "ht_sine_sine",
                "ht_sine_leadsine",
            ]
        ],
        "roll_std_ret_1_20",
        "roll_mean_volume_10",
        "roll_min_rsi_timeperiod=14_5",
        "roll_max_ret_1_lag_1_5",
        "roll_zscore_close_24",
        "roll_skew_ret_1_30",
        "hour_sin",
        "hour_cos",
        "dayofweek_sin",
        "dayofweek_cos",
        "month_sin",
        "month_cos",
        "cdl_doji",
        "cdl_engulfing",
        "cdl_hikkake",
    ]
    # the same mapping in another key order names the columns the same
    d = yaml.safe_load(SPEC_YAML)
    d["indicators"][3]["params"] = {"nbdevdn": 1.5, "timeperiod": 20}
    assert (
        FeatureSpec.model_validate(dict(reversed(list(d.items())))).feature_names() == spec().feature_names()
    )


def test_build_features_shape_dtype_and_values() -> None:
    c, x = candles(), full()
    assert list(x.columns) == spec().feature_names()
    assert x.index.equals(c.index) and (x.dtypes == np.float64).all()
    assert x.attrs["symbol"] == "BTC/USDT"
    close = c["close"]
    assert_array_equal(x["ret_5"].to_numpy(), np.log(close / close.shift(5)).to_numpy())
    assert_array_equal(x["rsi_timeperiod=28"].to_numpy(), talib.RSI(close.to_numpy(), 28))
    assert_array_equal(x["macdhist"].to_numpy(), talib.MACD(close.to_numpy())[2])
    assert_array_equal(x["sma_timeperiod=20_input=volume"].to_numpy(), talib.SMA(c["volume"].to_numpy(), 20))
    lower = talib.BBANDS(close.to_numpy(), 20, 2.0, 1.5)[2]
    assert_array_equal(x["bbands_lowerband_timeperiod=20_nbdevdn=1.5"].to_numpy(), lower)
    # integer outputs become float with NaN (not TA-Lib's 0) during the warm-up
    maxidx = talib.MAXINDEX(close.to_numpy(), 10).astype("float64")
    maxidx[:9] = np.nan
    assert_array_equal(x["maxindex_timeperiod=10"].to_numpy(), maxidx)
    doji = talib.CDLDOJI(*(c[k].to_numpy() for k in ("open", "high", "low", "close"))).astype("float64")
    doji[: talib.abstract.Function("CDLDOJI").lookback] = np.nan
    assert_array_equal(x["cdl_doji"].to_numpy(), doji)
    assert_array_equal(x["rsi_timeperiod=14_lag_3"].to_numpy(), x["rsi_timeperiod=14"].shift(3).to_numpy())
    ret1 = x["ret_1"]
    assert_array_equal(x["roll_std_ret_1_20"].to_numpy(), ret1.rolling(20).std().to_numpy())
    assert_array_equal(x["roll_skew_ret_1_30"].to_numpy(), ret1.rolling(30).skew().to_numpy())
    assert_array_equal(x["roll_max_ret_1_lag_1_5"].to_numpy(), ret1.shift(1).rolling(5).max().to_numpy())
    z = (close - close.rolling(24).mean()) / close.rolling(24).std()
    np.testing.assert_allclose(x["roll_zscore_close_24"].to_numpy(), z.to_numpy(), rtol=1e-12)
    # calendar: 2024-01-01 00:00 UTC is a Monday in January
    row = x.iloc[0]
    assert row["hour_sin"] == 0.0 and row["hour_cos"] == 1.0
    assert row["dayofweek_sin"] == 0.0 and row["month_cos"] == 1.0
    six = x.loc["2024-01-01 06:00+00:00"]
    assert six["hour_sin"] == pytest.approx(1.0) and six["hour_cos"] == pytest.approx(0.0, abs=1e-15)


def test_build_features_from_plain_mapping_and_empty_spec() -> None:
    c = candles().iloc[:100]
    x = build_features(c, {"returns": [1], "calendar": ["hour"]})
    assert list(x.columns) == ["ret_1", "hour_sin", "hour_cos"]
    assert build_features(c, FeatureSpec()).shape == (100, 0)
    allp = build_features(c, {"patterns": True})
    assert allp.shape == (100, 61) and all(col.startswith("cdl_") for col in allp.columns)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"indicators": [{"name": "RSII"}]}, r"unknown TA-Lib function 'RSII' \(did you mean 'RSI'"),
        (
            {"indicators": [{"name": "RSI", "params": {"period": 3}}]},
            r"unknown parameter 'period'.*timeperiod=14",
        ),
        (
            {"indicators": [{"name": "MACD", "outputs": ["hist"]}]},
            r"unknown output 'hist' \(did you mean 'macdhist'",
        ),
        (
            {"indicators": [{"name": "SMA", "input": "vol"}]},
            r"input 'vol' is not a candle column \(did you mean",
        ),
        ({"indicators": [{"name": "BETA", "input": "close"}]}, r"BETA takes several input series"),
        (
            {
                "indicators": [
                    {"name": "RSI", "params": {"timeperiod": 14}},
                    {"name": "rsi", "params": {"timeperiod": [7, 14]}},
                ]
            },
            r"'rsi_timeperiod=14' is produced twice",
        ),
        (
            {"rolling": [{"stat": "stdev", "column": "close", "window": 5}]},
            r"unknown rolling stat 'stdev' \(did you mean 'std'",
        ),
        (
            {"rolling": [{"stat": "std", "column": "ret_2", "window": 5}], "returns": [1]},
            r"unknown column 'ret_2' \(did you mean 'ret_1'",
        ),
        (
            {"rolling": [{"stat": "skew", "column": "close", "window": 2}]},
            r"skew needs a window of at least 3",
        ),
        ({"rolling": [{"stat": "std", "column": "close", "window": 1}]}, r"greater than or equal to 2"),
        ({"calendar": ["weekday"]}, r"unknown calendar field 'weekday'"),
        ({"calendar": ["hours"]}, r"did you mean 'hour'"),
        ({"patterns": ["dogi"]}, r"did you mean 'doji'"),
        ({"returns": [1, 1]}, r"returns: 1 is listed twice"),
        ({"returns": [0]}, r"greater than or equal to 1"),
        ({"returns": [True]}, r"valid integer"),
        ({"lag": [1]}, r"Extra inputs are not permitted"),
    ],
)
def test_spec_validation_errors(bad, match) -> None:
    with pytest.raises(pydantic.ValidationError, match=match):
        FeatureSpec.model_validate(bad)


def test_spec_is_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        spec().returns = [2]  # type: ignore[misc]


# --- causality --------------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(k=st.integers(min_value=1, max_value=5980))
def test_build_features_is_causal(k: int) -> None:
    """The features of candles[:k] are the first k rows of the features of all candles."""
    c = candles()
    part = build_features(c.iloc[:k], spec())
    want = full().iloc[:k]
    assert list(part.columns) == list(want.columns) and part.index.equals(want.index)
    np.testing.assert_allclose(part.to_numpy(), want.to_numpy(), rtol=1e-9, atol=0)


# --- Scaler -------------------------------------------------------------------------------------------------------------


def _frame() -> pd.DataFrame:
    x = full()[["ret_1", "rsi_timeperiod=14", "roll_std_ret_1_20", "hour_sin"]].copy()
    x["const"] = 3.0
    return x


@pytest.mark.parametrize("method", ["standard", "robust", "minmax"])
def test_scaler_statistics_come_only_from_fit_data(method: str) -> None:
    x = _frame()
    train, test = x.iloc[:3000], x.iloc[3000:]
    s = Scaler(method).fit(train)
    clean = train.dropna()  # warm-up rows with NaN are ignored
    assert s.n_samples_ == len(clean) < len(train)
    if method == "standard":
        np.testing.assert_allclose(s.center_, clean.mean(), rtol=1e-12)
        np.testing.assert_allclose(s.scale_[:-1], clean.std(ddof=0)[:-1], rtol=1e-12)
    elif method == "robust":
        np.testing.assert_allclose(s.center_, clean.median(), rtol=1e-12)
        np.testing.assert_allclose(
            s.scale_[:-1], (clean.quantile(0.75) - clean.quantile(0.25))[:-1], rtol=1e-12
        )
    else:
        np.testing.assert_allclose(s.center_, clean.min(), rtol=1e-12)
        np.testing.assert_allclose(s.scale_[:-1], (clean.max() - clean.min())[:-1], rtol=1e-12)
    assert s.scale_["const"] == 1.0  # constant column: centred only
    # changing the rows after the training window changes nothing fitted
    wild = pd.concat([train, test * 1000 + 7])
    s2 = Scaler(method).fit(wild.iloc[:3000])
    pd.testing.assert_series_equal(s.center_, s2.center_)
    pd.testing.assert_series_equal(s.scale_, s2.scale_)
    pd.testing.assert_frame_equal(s.transform(test), s2.transform(test))
    # transform applies the fitted statistics forward, keeps NaN, and can be undone
    out = s.transform(x)
    assert out.index.equals(x.index) and np.isnan(out.iloc[0]["roll_std_ret_1_20"])
    np.testing.assert_allclose(out.to_numpy(), ((x - s.center_) / s.scale_).to_numpy(), rtol=1e-15)
    np.testing.assert_allclose(s.inverse_transform(out).to_numpy(), x.to_numpy(), rtol=1e-12, atol=1e-12)


def test_scaler_standard_fit_transform_and_errors() -> None:
    x = _frame().iloc[100:2000]
    z = Scaler().fit_transform(x)
    np.testing.assert_allclose(z.drop(columns="const").mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.drop(columns="const").std(ddof=0), 1.0, rtol=1e-12)
    assert (z[x.columns[::-1]].columns == x.columns[::-1]).all()  # column order of the input does not matter
    np.testing.assert_allclose(Scaler().fit(x).transform(x[x.columns[::-1]]), z)
    with pytest.raises(ValueError, match="not fitted"):
        Scaler().transform(x)
    with pytest.raises(ValueError, match=r"unknown scaler method 'robst' \(did you mean 'robust'"):
        Scaler("robst")  # type: ignore[arg-type]
    s = Scaler().fit(x)
    with pytest.raises(ValueError, match=r"'ret_1' was fitted but is missing"):
        s.transform(x.rename(columns={"ret_1": "ret_2"}))
    with pytest.raises(ValueError, match=r"no row .* is free of NaN"):
        Scaler().fit(x.assign(bad=np.nan))
