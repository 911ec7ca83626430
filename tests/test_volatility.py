"""Volatility forecasting: metrics and the RV target against plain loops, causal features and forecasts,
GARCH without leakage (and against a hand-written recursion), the MLP on planted heteroskedasticity, and the
out-of-sample table on the real BTC 1h sample."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.ml.trainer import TrainConfig, Trainer
from workbench.ml.volatility import (
    ConstantVol,
    GARCHVol,
    GRUVol,
    HARVol,
    HistoricalVol,
    MLPVol,
    VolModel,
    default_windows,
    evaluate_vol_models,
    log_returns,
    qlike,
    realized_variance,
    rmse,
    split_train_test,
    vol_features,
    vol_forecasts,
)
from workbench.types import candles_from_frame

pytest.importorskip("arch")

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def candles_from_returns(
    r: np.ndarray, volume: np.ndarray | None = None, hl_sigma: np.ndarray | None = None, seed: int = 0
) -> pd.DataFrame:
    """Hourly candles whose close-to-close log returns are ``r`` (open = previous close); high and low
    stretch beyond the body by |N(0, hl_sigma)| (log units)."""
    rng = np.random.default_rng(seed)
    n = len(r) + 1
    close = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    open_ = np.concatenate([[100.0], close[:-1]])
    s = np.full(n, 1e-3) if hl_sigma is None else np.concatenate([[hl_sigma[0]], hl_sigma])
    up, down = np.abs(rng.normal(0, s)), np.abs(rng.normal(0, s))
    high = np.maximum(open_, close) * np.exp(up)
    low = np.minimum(open_, close) * np.exp(-down)
    vol = rng.uniform(50, 150, n) if volume is None else np.concatenate([[volume[0]], volume])
    index = pd.DatetimeIndex(T0 + pd.to_timedelta(np.arange(n), unit="h"), name="time")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": vol}, index=index)


def simulate_garch(n: int, omega: float, alpha: float, beta: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    r = np.empty(n)
    s2 = omega / (1 - alpha - beta)
    for t in range(n):
        r[t] = math.sqrt(s2) * z[t]
        s2 = omega + alpha * r[t] ** 2 + beta * s2
    return r


@pytest.fixture(scope="module")
def garch_candles() -> pd.DataFrame:
    return candles_from_returns(simulate_garch(4000, 5e-6, 0.10, 0.85, seed=3), seed=3)


@pytest.fixture(scope="module")
def btc(btc_1h: pd.DataFrame) -> pd.DataFrame:
    return candles_from_frame(btc_1h, timeframe="1h", source="sample")


# ------------------------------------------------------------------------------------------------ metrics


def test_qlike_and_rmse_match_direct_formulas() -> None:
    rng = np.random.default_rng(0)
    f = rng.uniform(0.5, 2.0, 200) * 1e-4
    rv = rng.exponential(1e-4, 200)
    f[3], rv[7] = np.nan, np.nan
    ql, se, n = 0.0, 0.0, 0
    for a, b in zip(f, rv, strict=True):
        if math.isnan(a) or math.isnan(b):
            continue
        ql += b / a - math.log(b / a) - 1
        se += (math.sqrt(a) - math.sqrt(b)) ** 2
        n += 1
    assert qlike(f, rv) == pytest.approx(ql / n, rel=1e-12)
    assert rmse(f, rv) == pytest.approx(math.sqrt(se / n), rel=1e-12)
    assert qlike(rv[:3], rv[:3]) == pytest.approx(0.0, abs=1e-15)  # perfect forecast
    assert rmse(rv[:3], rv[:3]) == 0.0
    assert math.isnan(qlike([np.nan], [1.0]))
    with pytest.raises(ValueError, match="> 0"):
        qlike([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="values"):
        rmse([1.0], [1.0, 2.0])


def test_qlike_matches_the_trainer_loss() -> None:
    import torch

    from workbench.ml.trainer import LOSSES

    rng = np.random.default_rng(1)
    f, rv = rng.uniform(0.5, 2, 50), rng.exponential(1, 50)
    loss = float(
        LOSSES["qlike"]()(torch.tensor(f, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64))
    )
    assert qlike(f, rv) == pytest.approx(loss, rel=1e-12)


# ---------------------------------------------------------------------------------------- target, features


def test_realized_variance_matches_a_plain_loop(garch_candles: pd.DataFrame) -> None:
    c = garch_candles.iloc[:300]
    close = c["close"].tolist()
    for h in (1, 5, 24):
        rv = realized_variance(c, h)
        assert rv.index.equals(c.index)
        for t in range(len(c)):
            if t + h >= len(c):
                assert math.isnan(rv.iloc[t])
                continue
            want = sum(math.log(close[t + i] / close[t + i - 1]) ** 2 for i in range(1, h + 1))
            assert rv.iloc[t] == pytest.approx(want, rel=1e-9, abs=1e-18)
    with pytest.raises(ValueError, match="horizon"):
        realized_variance(c, 0)


def test_vol_features_are_causal(garch_candles: pd.DataFrame) -> None:
    c = garch_candles.iloc[:700]
    full = vol_features(c, (1, 24, 168))
    assert {"rv_1", "rv_24", "rv_168", "pk_24", "abs_ret", "vlm_chg", "vlm_rel"} <= set(full.columns)
    for k in (1, 2, 30, 168, 169, 400, 699):
        pd.testing.assert_frame_equal(vol_features(c.iloc[:k], (1, 24, 168)), full.iloc[:k], rtol=1e-12)
    # changing the future leaves the past untouched
    c2 = c.copy()
    c2.iloc[500:, :4] *= 1.3
    pd.testing.assert_frame_equal(vol_features(c2, (1, 24, 168)).iloc[:500], full.iloc[:500], rtol=1e-12)
    # definitions on one bar
    t = 300
    r = np.log(c["close"] / c["close"].shift())
    assert full["rv_24"].iloc[t] == pytest.approx(float((r.iloc[t - 23 : t + 1] ** 2).mean()), rel=1e-12)
    pk = np.log(c["high"] / c["low"]) ** 2 / (4 * math.log(2))
    assert full["pk_168"].iloc[t] == pytest.approx(float(pk.iloc[t - 167 : t + 1].mean()), rel=1e-12)
    assert full["rv_168"].isna().sum() == 168  # no return at bar 0, then a full window


def test_default_windows_follow_the_bar_length(garch_candles: pd.DataFrame, btc: pd.DataFrame) -> None:
    assert default_windows(btc) == (1, 24, 168)
    daily = garch_candles.iloc[:50].copy()
    daily.index = pd.DatetimeIndex(T0 + pd.to_timedelta(np.arange(50), unit="D"), name="time")
    assert default_windows(daily) == (1, 7, 30)


# ---------------------------------------------------------------------------------------------------- GARCH


def test_garch_parameters_never_see_test_data(garch_candles: pd.DataFrame) -> None:
    end, h = 2800, 10
    m = GARCHVol(h).fit(garch_candles.iloc[:end])
    params = m.params_.copy()
    m.predict(garch_candles)  # filtering forward through the test bars re-estimates nothing
    pd.testing.assert_series_equal(m.params_, params)
    # the evaluation fits on the training bars only: another test period gives the same parameters, and
    # the forecasts before the first changed bar are identical
    other = garch_candles.copy()
    other.iloc[end + 500 :, :4] *= np.exp(np.linspace(0, 0.5, len(other) - end - 500))[:, None]
    a, b = GARCHVol(h), GARCHVol(h)
    fa = vol_forecasts(garch_candles, h, end, [a])["garch"]
    fb = vol_forecasts(other, h, end, [b])["garch"]
    pd.testing.assert_series_equal(a.params_, params)
    pd.testing.assert_series_equal(b.params_, params)
    cut = garch_candles.index[end + 500]
    np.testing.assert_allclose(fa[fa.index < cut], fb[fb.index < cut], rtol=1e-12)
    assert not np.allclose(fa[fa.index > cut], fb[fb.index > cut])
    # causality of predict: forecasts on a prefix equal the prefix of the forecasts
    full = m.predict(garch_candles)
    np.testing.assert_allclose(m.predict(garch_candles.iloc[:1500]), full.iloc[:1500], rtol=1e-10)
    assert math.isnan(full.iloc[0]) and full.iloc[1:].notna().all()


def test_garch_forecast_matches_a_hand_written_filter(garch_candles: pd.DataFrame) -> None:
    """sigma2_{t+1} = omega + alpha r_t^2 + beta sigma2_t from arch's backcast, then the h-step sum."""
    h, scale = 6, 100.0
    m = GARCHVol(h).fit(garch_candles.iloc[:2000])
    omega, alpha, beta = (float(m.params_[k]) for k in ("omega", "alpha[1]", "beta[1]"))
    c = garch_candles.iloc[:2600]
    y = (log_returns(c).to_numpy()[1:] * scale) ** 2
    w = 0.94 ** np.arange(75)
    s2 = float(np.sum(y[:75] * w / w.sum()))  # arch's backcast: sigma2 before the first return
    s2 = omega + (alpha + beta) * s2  # sigma2 of the first return (backcast also stands in for r^2)
    ubar, p = omega / (1 - alpha - beta), alpha + beta
    want = np.full(len(c), np.nan)
    for j in range(len(y)):  # y[j] is the return of bar j + 1
        s2 = omega + alpha * y[j] + beta * s2  # now sigma2 of bar j + 2, known at the close of bar j + 1
        want[j + 1] = sum(ubar + p ** (k - 1) * (s2 - ubar) for k in range(1, h + 1)) / scale**2
    np.testing.assert_allclose(m.predict(c).to_numpy(), want, rtol=1e-9)
    assert 0.9 < m.persistence < 1.0


def test_garch_beats_constant_variance_on_simulated_garch(garch_candles: pd.DataFrame) -> None:
    models = [ConstantVol(10), HistoricalVol(10), GARCHVol(10)]
    table = evaluate_vol_models(garch_candles, 10, 0.6, models=models)
    print("\nsimulated GARCH(1,1), horizon 10\n", table.to_string(float_format=lambda x: f"{x:.6g}"))
    assert table.loc["garch", "qlike"] < 0.9 * table.loc["constant", "qlike"]
    assert table.loc["garch", "qlike"] < table.loc["hist_vol", "qlike"]
    assert table.loc["garch", "rmse"] < table.loc["constant", "rmse"]
    g = models[2].params_
    assert abs(g["alpha[1]"] - 0.10) < 0.05 and abs(g["beta[1]"] - 0.85) < 0.07


# ----------------------------------------------------------------------------------------------- HAR, MLP


def test_har_is_ols_on_trailing_rv(garch_candles: pd.DataFrame) -> None:
    train = garch_candles.iloc[:2500]
    m = HARVol(10, (1, 24, 168)).fit(train)
    f = vol_features(train, (1, 24, 168))
    X = np.column_stack([np.ones(len(f)), f[["rv_1", "rv_24", "rv_168"]].to_numpy()])
    y = realized_variance(train, 10).to_numpy()
    ok = np.isfinite(X).all(axis=1) & np.isfinite(y)
    coef = np.linalg.solve(X[ok].T @ X[ok], X[ok].T @ y[ok])
    np.testing.assert_allclose(m.coef_, coef, rtol=1e-8)
    pred = m.predict(garch_candles)
    np.testing.assert_allclose(pred.iloc[:1000], m.predict(garch_candles.iloc[:1000]), rtol=1e-12)
    assert pred.iloc[:168].isna().all() and (pred.iloc[168:] > 0).all()
    logm = HARVol(10, (1, 24, 168), log=True).fit(train)
    assert logm.name == "har_log" and (logm.predict(garch_candles).iloc[168:] > 0).all()


def planted_candles(n: int = 3000, seed: int = 5) -> pd.DataFrame:
    """Log variance follows a persistent AR(1) that volume reveals (volume = exp(x) with little noise) and
    high-low ranges reflect: a relationship the MLP can learn from the features and historical vol cannot
    see as quickly."""
    rng = np.random.default_rng(seed)
    x = np.empty(n)
    x[0] = 0.0
    for t in range(1, n):
        x[t] = 0.97 * x[t - 1] + 0.35 * rng.standard_normal()
    sigma = 0.004 * np.exp(x / 2)
    r = sigma * rng.standard_normal(n)
    volume = 1000 * np.exp(x + 0.1 * rng.standard_normal(n))
    return candles_from_returns(r, volume=volume, hl_sigma=0.5 * sigma, seed=seed)


def test_mlp_learns_planted_heteroskedasticity() -> None:
    c = planted_candles()
    cfg = TrainConfig(epochs=40, batch_size=128, lr=3e-3, weight_decay=1e-4, patience=6, seed=1)
    mlp = MLPVol(8, (1, 8, 32), config=cfg, n_seeds=2)
    models = [ConstantVol(8), HistoricalVol(8), mlp]
    table = evaluate_vol_models(c, 8, 0.7, models=models)
    print("\nplanted heteroskedasticity, horizon 8\n", table.to_string(float_format=lambda x: f"{x:.6g}"))
    assert table.loc["mlp", "qlike"] < 0.8 * table.loc["hist_vol", "qlike"]
    assert table.loc["mlp", "qlike"] < 0.8 * table.loc["constant", "qlike"]
    assert table.loc["mlp", "rmse"] < table.loc["hist_vol", "rmse"]
    # trained by the workbench Trainer with QLIKE, one per seed
    assert len(mlp.trainers_) == 2 and all(isinstance(t, Trainer) for t in mlp.trainers_)
    assert all(t.loss_name == "qlike" for t in mlp.trainers_)
    assert mlp.history_.best_epoch >= 0 and mlp.history_.valid_loss
    # causal forecasts: a prefix gives the prefix of the forecasts
    full = mlp.predict(c)
    np.testing.assert_allclose(mlp.predict(c.iloc[:1200]), full.iloc[:1200], rtol=1e-5)


def test_neural_standardisation_uses_the_training_window_only() -> None:
    c = planted_candles(1500, seed=2)
    cfg = TrainConfig(epochs=2, batch_size=256, seed=0)
    a = MLPVol(8, (1, 8, 32), config=cfg, n_seeds=1).fit(c.iloc[:1000])
    tail_changed = c.copy()
    tail_changed.iloc[1000:, :4] *= 1.5
    tail_changed.iloc[1000:, 4] *= 10
    b = MLPVol(8, (1, 8, 32), config=cfg, n_seeds=1).fit(tail_changed.iloc[:1000])
    np.testing.assert_array_equal(a.mu_, b.mu_)
    np.testing.assert_array_equal(a.sd_, b.sd_)
    assert a.y_scale_ == b.y_scale_
    # same training bars and seed: the same network (initial weights are seeded too), the same forecasts
    np.testing.assert_array_equal(a.predict(c.iloc[:1000]), b.predict(c.iloc[:1000]))


def test_gru_trains_with_the_trainer_and_is_causal() -> None:
    c = planted_candles(1500, seed=4)
    cfg = TrainConfig(epochs=3, batch_size=256, lr=3e-3, seed=0)
    g = GRUVol(8, (1, 8, 32), seq_len=6, hidden=4, config=cfg).fit(c.iloc[:1000])
    assert isinstance(g.trainers_[0], Trainer) and g.trainers_[0].loss_name == "qlike"
    p = g.predict(c)
    first = 32 + 6 - 1  # the first bar with 6 complete feature rows
    assert p.iloc[:first].isna().all() and (p.iloc[first:] > 0).all()
    np.testing.assert_allclose(g.predict(c.iloc[:700]), p.iloc[:700], rtol=1e-5)


# --------------------------------------------------------------------------------------------- evaluation


def test_split_purges_the_horizon(garch_candles: pd.DataFrame) -> None:
    train, start = split_train_test(garch_candles, 24, 2000)
    assert len(train) == 2000 and start == 2024
    # the last training target ends at the last training bar; the first scored forecast starts after it
    rv = realized_variance(train, 24)
    assert rv.last_valid_index() == garch_candles.index[2000 - 1 - 24]
    assert split_train_test(garch_candles, 24, 0.5)[1] == round(len(garch_candles) * 0.5) + 24
    assert split_train_test(garch_candles, 24, garch_candles.index[1500], purge=0)[1] == 1500
    assert split_train_test(garch_candles, 24, "2024-01-10")[1] == 9 * 24 + 24
    with pytest.raises(ValueError, match="no training or no scorable"):
        split_train_test(garch_candles, 24, len(garch_candles) - 30)
    fc = vol_forecasts(garch_candles, 24, 2000, [HistoricalVol(24)])
    assert fc.index[0] == garch_candles.index[2024] and list(fc.columns) == ["hist_vol", "realized"]
    with pytest.raises(ValueError, match="horizon"):
        vol_forecasts(garch_candles, 24, 2000, [HistoricalVol(12)])


def test_models_share_one_interface() -> None:
    for m in (ConstantVol(5), HistoricalVol(5), GARCHVol(5), HARVol(5), MLPVol(5), GRUVol(5)):
        assert isinstance(m, VolModel) and m.horizon == 5 and m.name
    with pytest.raises(RuntimeError, match="fit"):
        GARCHVol(5).predict(planted_candles(100))


def test_btc_1h_out_of_sample_table(btc: pd.DataFrame) -> None:
    h = 24
    table = evaluate_vol_models(btc, h, 0.7)
    print(
        f"\nBTCUSDT 1h sample, horizon {h} bars, 70/30 split (purge {h}), out of sample\n"
        + table.to_string(float_format=lambda x: f"{x:.5f}")
    )
    assert list(table.columns) == ["qlike", "rmse", "n"]
    assert set(table.index) == {"constant", "hist_vol", "garch", "har", "har_log", "mlp"}
    n_test = len(btc) - (round(len(btc) * 0.7) + h) - h
    assert (table["n"] == n_test).all()
    assert np.isfinite(table[["qlike", "rmse"]].to_numpy()).all() and (table["qlike"] > 0).all()
    # the long-memory regression beats a one-day trailing estimate on this sample
    assert table.loc["har", "qlike"] < table.loc["hist_vol", "qlike"]


def test_vol_models_go_into_the_versioned_registry(tmp_path, garch_candles: pd.DataFrame) -> None:
    """GARCH, HAR and a small MLP: saved, versioned, promoted and loaded back with identical forecasts."""
    from workbench.ml.registry import Registry, RegistryError
    from workbench.ml.volatility import register_vol_model

    reg = Registry(tmp_path / "models")
    train = garch_candles.iloc[:1500]
    cfg = TrainConfig(epochs=2, batch_size=128, lr=3e-3, patience=2, seed=1)
    for model in (GARCHVol(8), HARVol(8), MLPVol(8, (1, 8, 32), config=cfg)):
        model.fit(train)
        name = f"vol-{model.name}"
        assert register_vol_model(reg, name, model, train, metrics={"qlike": 0.5}) == "v0001"
        assert register_vol_model(reg, name, model, train) == "v0002"
        reg.promote(name, "v0001")
        back, meta = reg.load_artifact(name, kind="volatility")
        assert meta["version"] == "v0001" and meta["kind"] == "volatility" and meta["horizon"] == 8
        assert meta["data"]["rows"] == 1500 and len(meta["data"]["sha256"]) == 64
        assert meta["metrics"][model.name] == {"qlike": 0.5}
        pd.testing.assert_series_equal(back.predict(garch_candles), model.predict(garch_candles))
    table = reg.ls()
    assert set(table["kind"]) == {"volatility"} and len(table) == 6
    with pytest.raises(RegistryError, match="is a volatility model; load it with Registry"):
        reg.load("vol-har")
    with pytest.raises(RegistryError, match="is a volatility model, not sentiment"):
        reg.load_artifact("vol-har", kind="sentiment")
    with pytest.raises(ValueError, match="not fitted"):
        register_vol_model(reg, "vol-new", HARVol(8), train)
    assert reg.versions("vol-new") == [] and not list((tmp_path / "models").glob("*/.tmp-*"))
