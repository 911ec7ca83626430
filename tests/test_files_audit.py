"""Import/export, audit findings on planted defects, and resampling against the exchange's own 1h bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE

from workbench.data.audit import audit, audit_candles, list_series
from workbench.data.candles import resample
from workbench.data.files import FileFormatError, export_candles, import_candles, read_candle_file
from workbench.data.store import Store
from workbench.types import DataKey

H = 3_600_000


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "binance" / "BTCUSDT_1h.csv.gz").iloc[:500]


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_import_export_roundtrip_is_exact(tmp_path, btc, fmt) -> None:
    src = tmp_path / f"in.{fmt}"
    btc.to_parquet(src) if fmt == "parquet" else btc.to_csv(src, index=False)
    s = Store(tmp_path / "store")
    r = import_candles(s, src, "binance", "BTC/USDT", "1h")
    assert r.rows_added == 500
    assert import_candles(s, src, "binance", "BTC/USDT", "1h").rows_added == 0  # idempotent
    out = tmp_path / f"out.{fmt}"
    assert export_candles(s, "binance", "BTC/USDT", "1h", out) == 500
    back = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
    pd.testing.assert_frame_equal(back, btc.reset_index(drop=True), check_exact=True)


def test_iso_timestamps_are_accepted(tmp_path, btc) -> None:
    df = btc.copy()
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="ms", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    df.to_csv(tmp_path / "iso.csv", index=False)
    got = read_candle_file(tmp_path / "iso.csv", "1h")
    assert got["ts"].tolist() == btc["timestamp"].tolist()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.drop(columns=["volume"]), "missing column(s) volume"),
        (lambda d: d.assign(timestamp=d["timestamp"] // 1000), "looks like epoch seconds"),
        (
            lambda d: d.assign(close=d["close"].astype(str).where(d.index != 7, "n/a")),
            "row 8: column 'close': not a number ('n/a')",
        ),
        (
            lambda d: d.assign(timestamp=d["timestamp"].astype(str).where(d.index != 3, "soon")),
            "row 4: column 'timestamp'",
        ),
        (
            lambda d: pd.concat([d.iloc[:10], d.iloc[9:10], d.iloc[10:]]),
            "row 11 (2024-01-01T09:00:00+00:00): duplicate timestamp",
        ),
        (lambda d: d.iloc[::-1], "row 2 (2024-01-21T18:00:00+00:00): out-of-order timestamp"),
        (lambda d: d.assign(timestamp=d["timestamp"] + 60_000), "not aligned to the 1h grid"),
        (
            lambda d: d.assign(volume=d["volume"].where(d.index != 5, -1.0)),
            "row 6 (2024-01-01T05:00:00+00:00): volume is negative",
        ),
        (lambda d: d.iloc[:0], "no rows"),
    ],
)
def test_bad_files_name_file_row_and_column_and_write_nothing(tmp_path, btc, mutate, message) -> None:
    path = tmp_path / "bad.csv"
    mutate(btc.copy()).to_csv(path, index=False)
    s = Store(tmp_path / "store")
    with pytest.raises(FileFormatError) as e:
        import_candles(s, path, "binance", "BTC/USDT", "1h")
    assert str(path) in str(e.value) and message in str(e.value)
    assert s.series() == []


def test_audit_finds_each_planted_defect() -> None:
    n = 300
    ts = (1_704_067_200_000 + H * np.arange(n)).astype("int64")
    ts = np.delete(ts, [50, 51, 52])  # a 3-bar gap
    m = len(ts)
    rng = np.random.default_rng(3)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, m)))
    o = np.concatenate([[100.0], c[:-1]])
    h, lo, v = np.maximum(o, c) * 1.001, np.minimum(o, c) * 0.999, rng.uniform(1, 2, m)
    o[100] = h[100] = lo[100] = c[100] = c[99]
    v[100] = 0.0  # zero-volume filler
    h[150] = lo[150] * 0.99  # OHLC inconsistent
    c[200] *= 1.3  # a bad tick: spikes and reverts
    ts_dup = np.insert(ts, 250, ts[249])
    arrays = [np.insert(a, 250, a[249]) for a in (o, h, lo, c, v)]
    f = pd.DataFrame(audit_candles(DataKey("candles", "x", "A/B", "1h"), ts_dup, *arrays))
    by = f.groupby("check")
    assert set(f["check"]) == {"gap", "zero_volume", "ohlc", "outlier", "duplicate"}
    gap = f[f["check"] == "gap"].iloc[0]
    assert gap["bars"] == 3 and gap["start"] == pd.Timestamp(ts[49] + H, unit="ms", tz="UTC")
    assert by.size()["outlier"] == 1 and f[f["check"] == "outlier"].iloc[0]["start"] == pd.Timestamp(
        ts[200], unit="ms", tz="UTC"
    )


def test_list_and_audit_on_the_real_sample(tmp_path) -> None:
    from workbench.data.sample import load_sample

    s = Store(tmp_path)
    load_sample(s, SAMPLE, kinds=("candles",))
    ls = list_series(s)
    assert ls["rows"].tolist() == [5980, 71769, 5980, 71769]
    assert (ls["gaps"] == 0).all() and (ls["missing_bars"] == 0).all()
    findings = audit(s)
    assert set(findings["check"]) <= {"outlier"}
    # 2024-01-09 21:10 UTC: the hacked SEC tweet about spot ETFs, a real spike that reverted
    assert "2024-01-09 21:10:00+00:00" in findings["start"].astype(str).tolist()


def test_resample_5m_to_1h_reproduces_the_exchanges_1h_bars(tmp_path) -> None:
    from workbench.data.sample import load_sample

    s = Store(tmp_path)
    load_sample(s, SAMPLE, kinds=("candles",))
    m5 = s.candles("binance", "BTC/USDT", "5m")
    h1 = s.candles("binance", "BTC/USDT", "1h")
    r = resample(m5, "1h")
    assert r.attrs["timeframe"] == "1h"
    common = r.index.intersection(h1.index)
    assert len(common) == len(h1)
    pd.testing.assert_frame_equal(
        r.loc[common, ["open", "high", "low", "close"]],
        h1.loc[common, ["open", "high", "low", "close"]],
        check_exact=True,
    )
    # volumes: the source rounded two 5m volumes in the 6th decimal (a 2e-6 difference in 13,730)
    np.testing.assert_allclose(r.loc[common, "volume"], h1.loc[common, "volume"], rtol=1e-9)
    # an incomplete last bucket is dropped unless asked for
    cut = m5.iloc[:-3]
    assert len(resample(cut, "1h")) == len(resample(cut, "1h", partial=True)) - 1
    with pytest.raises(ValueError, match="not a multiple"):
        resample(m5, "7m")
