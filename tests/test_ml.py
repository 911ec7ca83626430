"""Trainer repeatability, learning a planted signal (and not noise), registry round trip, promotion and
rollback, batch = incremental predictions, tuning that never sees the test period, OOS-only ML backtests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SAMPLE
from torch import nn

from workbench.backtest.engine import BacktestConfig
from workbench.backtest.oos import backtest_predictions
from workbench.ml.datasets import feature_lookback, make_dataset
from workbench.ml.predict import PredictionService
from workbench.ml.price import train_price_model
from workbench.ml.registry import Registry, RegistryError
from workbench.ml.train import train_model
from workbench.ml.trainer import TrainConfig, Trainer, set_seed
from workbench.types import candles_from_frame


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    c = candles_from_frame(
        pd.read_csv(SAMPLE / "binance" / "BTCUSDT_1h.csv.gz"), timeframe="1h", source="sample"
    )
    c.attrs.update(exchange="binance", symbol="BTC/USDT", timeframe="1h")
    return c


def synthetic(n: int, planted: bool, seed: int = 0) -> pd.DataFrame:
    """Random-walk candles; with ``planted``, the sign of the next 4 bars' drift follows a lagged, visible
    feature (the last 4-bar return), so a model can learn it; without, returns are i.i.d. noise."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 0.004, n)
    if planted:
        for t in range(8, n):
            r[t] += 0.6 * np.sign(r[t - 8 : t - 4].sum()) * 0.004
    close = 100 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100.0], close[:-1]])
    idx = pd.date_range("2023-01-01", periods=n, freq="1h", tz="UTC", name="time")
    c = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.0005,
            "low": np.minimum(open_, close) * 0.9995,
            "close": close,
            "volume": rng.uniform(1, 2, n),
        },
        index=idx,
    )
    c.attrs.update(exchange="synthetic", symbol="SYN/USD", timeframe="1h")
    return c


SPEC = {"returns": [1, 4, 8]}


def test_trainer_is_repeatable_with_a_seed() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 6)).astype("float32")
    y = (X[:, 0] - X[:, 1] > 0).astype("float32")

    def run() -> np.ndarray:
        set_seed(5)
        m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
        t = Trainer(m, "bce", TrainConfig(epochs=8, seed=5))
        t.fit((X[:1500], y[:1500]), (X[1500:], y[1500:]))
        return t.predict(X[1500:])

    assert np.array_equal(run(), run())


def test_trainer_early_stops_and_checkpoints(tmp_path) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 4)).astype("float32")
    y = rng.normal(size=600).astype("float32")  # pure noise: validation loss cannot improve for long
    set_seed(1)
    t = Trainer(
        nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 1)),
        "mse",
        TrainConfig(epochs=200, patience=3, seed=1, checkpoint=str(tmp_path / "ck.pt")),
    )
    h = t.fit((X[:400], y[:400]), (X[400:], y[400:]))
    assert h.stopped_early and len(h.train_loss) < 200
    assert (tmp_path / "ck.pt").exists()
    assert h.best_valid == min(h.valid_loss)


@pytest.mark.parametrize("arch", ["mlp", "gru", "tcn"])
def test_a_planted_signal_is_learned_out_of_sample(arch) -> None:
    c = synthetic(2400 if arch == "mlp" else 1600, planted=True)
    r = train_price_model(
        c,
        arch=arch,
        horizon=4,
        spec=SPEC,
        folds=3,
        window=None if arch == "mlp" else 8,
        hparams={"epochs": 15 if arch == "mlp" else 8},
        final=False,
    )
    m = r.metrics
    assert m[arch]["accuracy"] > 0.6, r.table()
    assert m[arch]["accuracy"] > m["majority"]["accuracy"] + 0.05


def test_noise_is_not_learned_out_of_sample() -> None:
    c = synthetic(2400, planted=False, seed=3)
    r = train_price_model(c, arch="mlp", horizon=4, spec=SPEC, folds=3, hparams={"epochs": 15}, final=False)
    acc = r.metrics["mlp"]["accuracy"]
    n = r.metrics["mlp"]["n"]
    # within ~3 standard errors of a coin (overlapping 4-bar labels inflate the error; be generous)
    assert abs(acc - 0.5) < 3 * np.sqrt(0.25 / (n / 4)), r.table()


def test_oos_predictions_never_come_from_a_model_that_saw_them(btc) -> None:
    r = train_price_model(btc, arch="mlp", horizon=24, folds=3, hparams={"epochs": 3}, final=False)
    assert r.oos.index.is_unique and r.oos.index.is_monotonic_increasing
    for _, f in r.folds.iterrows():
        fold = r.oos[r.oos["fold"] == f["fold"]]
        assert fold.index[0] == f["test_start"]
    # baselines are scored on exactly the same rows
    assert {"majority", "last_direction", "logistic"} <= set(r.metrics)
    assert len({m["n"] for m in r.metrics.values()}) == 1


def test_registry_round_trip_promote_rollback_and_batch_equals_incremental(btc, tmp_path) -> None:
    reg = Registry(tmp_path / "models")
    out1 = train_model(
        btc, arch="mlp", folds=2, epochs=3, registry=reg, promote=True, force=True
    )  # the registry, not the model, is under test
    out2 = train_model(btc, arch="mlp", folds=2, epochs=4, registry=reg, name=out1.name)
    assert (out1.version, out2.version) == ("v0001", "v0002")
    assert reg.promoted(out1.name) == "v0001"
    meta = reg.meta(out1.name, "v0001")
    assert meta["data"]["rows"] == len(btc) and len(meta["data"]["sha256"]) == 64
    assert meta["metrics"]["mlp"]["n"] > 0 and meta["code_version"]
    reg.promote(out1.name, "v0002")
    assert reg.rollback(out1.name) == "v0001"
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        reg.rollback(out1.name)
    with pytest.raises(RegistryError, match="no version 'v0009'"):
        reg.promote(out1.name, "v0009")
    # the loaded model predicts exactly what the trained one did
    loaded = reg.load(out1.name)
    trained = out1.result.model
    x = torch.randn(5, len(meta["feature_names"]))
    assert torch.equal(loaded.model(x), trained(x))
    # batch and incremental (bar by bar, as the live engine calls it) agree
    svc = PredictionService.from_registry(reg, out1.name)
    assert svc.lookback == feature_lookback(meta["spec"]) + 1
    batch = svc.predict_batch(btc)
    start = len(btc) - 150
    svc.update(btc.iloc[start - svc.lookback : start])
    inc = np.array([svc.update(btc.iloc[i]) for i in range(start, len(btc))])
    np.testing.assert_allclose(inc, batch.iloc[start:].to_numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="not after the last bar"):
        svc.update(btc.iloc[start])


def test_cumulative_indicators_are_refused_for_models() -> None:
    with pytest.raises(ValueError, match="OBV is cumulative"):
        feature_lookback({"indicators": [{"name": "OBV"}]})


def test_tuning_never_sees_the_holdout(btc, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    out = train_model(btc, arch="mlp", folds=2, trials=3, holdout=0.3, storage=url, epochs=3)
    assert out.tuned is not None and out.holdout_start is not None
    assert out.result.oos.index[0] >= out.holdout_start  # every scored row lies in the held-out tail
    import optuna

    names = optuna.get_all_study_names(url)
    assert len(names) == 1
    n_trials = len(optuna.load_study(study_name=names[0], storage=url).trials)
    train_model(btc, arch="mlp", folds=2, trials=3, holdout=0.3, storage=url, epochs=3)  # resumes
    assert len(optuna.load_study(study_name=names[0], storage=url).trials) == n_trials


def test_ml_strategy_backtests_only_out_of_sample(btc) -> None:
    r = train_price_model(btc, arch="mlp", folds=3, hparams={"epochs": 3}, final=False)
    bt = backtest_predictions(btc, r.oos["prediction"], BacktestConfig(fees=0.001, direction="both"))
    assert bt.start == r.oos.index[0]
    held = bt.positions.iloc[:, 0] != 0
    # a position exists only on bars right after a bar with a prediction (decided at t, held from t+1)
    has_pred = r.oos["prediction"].reindex(bt.equity.index).notna()
    assert not (held & ~has_pred.shift(1, fill_value=False) & ~has_pred).any()


def test_dataset_windows_are_causal(btc) -> None:
    ds = make_dataset(btc, target="direction", horizon=24, window=8)
    short = make_dataset(btc.iloc[:3000], target="direction", horizon=24, window=8, keep_unlabelled=True)
    common = ds.index.intersection(short.index)
    a = ds.X[ds.index.get_indexer(common)]
    b = short.X[short.index.get_indexer(common)]
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_the_linear_schedule_warms_up_then_decays_to_zero() -> None:
    """The learning rate of each step under ``schedule='linear'``: up over the warm-up share, down to 0 at the end."""
    import torch

    from workbench.ml.trainer import TrainConfig, Trainer

    seen: list[float] = []

    class Probe(torch.nn.Linear):
        def forward(self, x):  # records the rate the optimiser is about to use
            seen.append(trainer_ref[0].optimizer.param_groups[0]["lr"])
            return super().forward(x)

    X, y = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32), np.zeros(40, dtype=np.float32)
    cfg = TrainConfig(epochs=2, batch_size=4, lr=0.1, schedule="linear", warmup=0.1, shuffle=False)
    trainer = Trainer(Probe(3, 1), loss="mse", config=cfg)
    trainer_ref = [trainer]
    trainer.fit((X, y))
    total, warm = 20, 2  # 2 epochs x 10 steps, 10% warm-up
    expected = [
        0.1 * (s + 1) / warm if s < warm else 0.1 * (total - s) / (total - warm) for s in range(total)
    ]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="schedule"):
        Trainer(Probe(3, 1), config=TrainConfig(schedule="cosine")).fit((X, y))
