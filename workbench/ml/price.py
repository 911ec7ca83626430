"""Price models trained and judged honestly: walk-forward (or purged k-fold) splits sized from the label
horizon, features scaled on each training window only, early stopping on a purged validation tail of the
training window, and every out-of-sample score reported beside naive baselines computed on the same rows.

Baselines for ``direction``: the majority class of the training window, the last direction (sign of the
return over the past ``horizon`` bars), and logistic regression on the same scaled features. For
``return``: a zero forecast, the training mean, and linear regression.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.features import Scaler
from workbench.ml.datasets import DEFAULT_SPEC, Dataset, make_dataset
from workbench.ml.models import SEQUENCE_ARCHS, build_model
from workbench.ml.splits import PurgedKFold, WalkForward
from workbench.ml.trainer import TrainConfig, Trainer, set_seed

__all__ = ["PriceModelResult", "fit_final", "train_price_model"]

log = logging.getLogger(__name__)

TRAIN_KEYS = ("lr", "weight_decay", "batch_size", "epochs", "patience")


@dataclass
class PriceModelResult:
    arch: str
    target: str
    horizon: int
    window: int
    hparams: dict[str, Any]
    spec: dict[str, Any]
    oos: pd.DataFrame  # index: bar; columns: prediction, y, fwd_return, fold, and baseline predictions
    metrics: dict[str, dict[str, float]]  # model and each baseline -> metric -> value (out of sample)
    folds: pd.DataFrame
    feature_names: list[str]
    model: torch.nn.Module | None = None
    scaler: Scaler | None = None
    history: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """Out-of-sample metrics, the model beside its baselines."""
        return pd.DataFrame(self.metrics).T


def _split_tail(train: np.ndarray, horizon: int, frac: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """The training window minus a validation tail, with ``horizon`` rows purged between them."""
    n_val = max(int(len(train) * frac), 1)
    fit = train[: max(len(train) - n_val - horizon, 1)]
    val = train[len(train) - n_val :]
    return fit, val


def _scale(ds: Dataset, fit_rows: np.ndarray) -> tuple[Scaler, np.ndarray]:
    """Fit a scaler on the fit rows' features (the last row of each window) and apply it to every window."""
    names = ds.feature_names
    scaler = Scaler("standard").fit(pd.DataFrame(ds.flat()[fit_rows], columns=names))
    flat = ds.X.reshape(-1, ds.X.shape[-1])
    scaled = scaler.transform(pd.DataFrame(flat, columns=names)).to_numpy("float32").reshape(ds.X.shape)
    return scaler, np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0)


def _fit_model(
    arch: str,
    X: np.ndarray,
    y: np.ndarray,
    fit: np.ndarray,
    val: np.ndarray,
    target: str,
    hparams: dict[str, Any],
    seed: int,
    on_epoch=None,
) -> tuple[torch.nn.Module, Trainer]:
    set_seed(seed)
    model = build_model(arch, X.shape[-1], **hparams)
    tc = {k: hparams[k] for k in TRAIN_KEYS if k in hparams}
    cfg = TrainConfig(**{"epochs": 40, "patience": 5, "batch_size": 256, "lr": 1e-3, **tc}, seed=seed)
    trainer = Trainer(model, "bce" if target == "direction" else "mse", cfg)
    trainer.fit((X[fit], y[fit]), (X[val], y[val]), on_epoch=on_epoch)
    return model, trainer


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _metrics_direction(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    p = np.clip(p, 1e-6, 1 - 1e-6)
    out = {
        "accuracy": float(np.mean((p > 0.5) == (y > 0.5))),
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "n": float(len(y)),
    }
    out["auc"] = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 and len(np.unique(p)) > 1 else 0.5
    return out


def _metrics_return(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr

    ic = spearmanr(pred, y).statistic if np.std(pred) > 0 else float("nan")
    return {
        "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
        "mae": float(np.mean(np.abs(pred - y))),
        "direction_accuracy": float(np.mean(np.sign(pred) == np.sign(y))),
        "ic": float(ic),
        "n": float(len(y)),
    }


def _splitter(validation: str, folds: int, horizon: int, test_size: int | None):
    if validation == "walk-forward":
        return WalkForward(folds, horizon=horizon, embargo=horizon, test_size=test_size)
    if validation == "purged-kfold":
        return PurgedKFold(folds, horizon=horizon, embargo=horizon)
    raise ValueError(f"unknown validation {validation!r}; use walk-forward or purged-kfold")


def train_price_model(
    candles: pd.DataFrame,
    *,
    arch: str = "mlp",
    target: str = "direction",
    horizon: int = 24,
    window: int | None = None,
    spec: dict[str, Any] | None = None,
    validation: str = "walk-forward",
    folds: int = 5,
    test_size: int | None = None,
    hparams: dict[str, Any] | None = None,
    seed: int = 42,
    final: bool = True,
) -> PriceModelResult:
    """Train ``arch`` on ``candles`` under walk-forward (or purged k-fold) validation; return out-of-sample
    predictions and metrics beside baselines, and (``final=True``) the model refitted on all labelled rows."""
    spec = spec or DEFAULT_SPEC
    window = window or (32 if arch in SEQUENCE_ARCHS else 1)
    hparams = dict(hparams or {})
    ds = make_dataset(candles, spec=spec, target=target, horizon=horizon, window=window)
    if len(ds) < 200:
        raise ValueError(f"only {len(ds)} labelled rows after warm-up: too few to train and validate")
    # the last direction over the past horizon, for the naive baseline
    close = candles["close"]
    past = (close / close.shift(horizon) - 1.0).reindex(ds.index).to_numpy()
    splitter = _splitter(validation, folds, horizon, test_size)
    rows, fold_rows = [], []
    from sklearn.linear_model import LinearRegression, LogisticRegression

    for k, (train, test) in enumerate(splitter.split(len(ds))):
        fit, val = _split_tail(train, horizon)
        _scaler, X = _scale(ds, fit)
        _model, trainer = _fit_model(arch, X, ds.y, fit, val, target, hparams, seed + k)
        raw = trainer.predict(X[test])
        flat = X if X.ndim == 2 else X[:, -1, :]
        if target == "direction":
            pred = _sigmoid(raw)
            majority = float(ds.y[train].mean() > 0.5)
            lin = (
                LogisticRegression(max_iter=500, C=1.0)
                .fit(flat[train], ds.y[train])
                .predict_proba(flat[test])[:, 1]
            )
            base = {
                "majority": np.full(len(test), majority),
                "last_direction": (past[test] > 0).astype(float),
                "logistic": lin,
            }
        else:
            pred = raw
            lin = LinearRegression().fit(flat[train], ds.y[train]).predict(flat[test])
            base = {
                "zero": np.zeros(len(test)),
                "train_mean": np.full(len(test), ds.y[train].mean()),
                "linear": lin,
            }
        df = pd.DataFrame(
            {"prediction": pred, "y": ds.y[test], "fwd_return": ds.fwd_return[test], "fold": k + 1},
            index=ds.index[test],
        )
        for name, b in base.items():
            df[f"baseline_{name}"] = b
        rows.append(df)
        fm = (_metrics_direction if target == "direction" else _metrics_return)(pred, ds.y[test])
        fold_rows.append(
            {
                "fold": k + 1,
                "train_rows": len(train),
                "test_start": ds.index[test[0]],
                "test_end": ds.index[test[-1]],
                "best_epoch": trainer.history.best_epoch,
                **fm,
            }
        )
        log.debug("fold %d: %s", k + 1, fm)
    oos = pd.concat(rows).sort_index()
    score = _metrics_direction if target == "direction" else _metrics_return
    metrics = {arch: score(oos["prediction"].to_numpy(), oos["y"].to_numpy())}
    for c in [c for c in oos.columns if c.startswith("baseline_")]:
        metrics[c.removeprefix("baseline_")] = score(oos[c].to_numpy(), oos["y"].to_numpy())
    result = PriceModelResult(
        arch,
        target,
        horizon,
        window,
        hparams,
        dict(spec),
        oos,
        metrics,
        pd.DataFrame(fold_rows),
        ds.feature_names,
    )
    if final:
        result.model, result.scaler, result.history = fit_final(ds, arch, target, hparams, seed)
    return result


def fit_final(ds: Dataset, arch: str, target: str, hparams: dict[str, Any], seed: int):
    """The deployable model: trained on every labelled row but a purged validation tail (early stopping)."""
    rows = np.arange(len(ds))
    fit, val = _split_tail(rows, ds.horizon)
    scaler, X = _scale(ds, fit)
    model, trainer = _fit_model(arch, X, ds.y, fit, val, target, hparams, seed)
    h = trainer.history.to_dict()
    h["rows"] = len(ds)
    return model, scaler, h
