"""Train (optionally tune), evaluate out of sample and register a price model in one call."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workbench.ml.datasets import DEFAULT_SPEC
from workbench.ml.price import PriceModelResult, train_price_model
from workbench.ml.registry import Registry, candles_hash
from workbench.ml.tune import tune_price_model

__all__ = ["TrainOutcome", "train_model"]


@dataclass
class TrainOutcome:
    result: PriceModelResult
    name: str | None
    version: str | None
    tuned: dict[str, Any] | None
    holdout_start: pd.Timestamp | None


def train_model(
    candles: pd.DataFrame,
    *,
    arch: str = "mlp",
    target: str = "direction",
    horizon: int = 24,
    window: int | None = None,
    validation: str = "walk-forward",
    folds: int = 5,
    trials: int = 0,
    holdout: float = 0.3,
    storage: str | None = None,
    epochs: int = 30,
    seed: int = 42,
    registry: Registry | None = None,
    name: str | None = None,
    promote: bool = False,
    spec: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Without ``trials``: walk-forward (or purged k-fold) evaluation over all the data. With ``trials``: tune
    on the first ``1 - holdout`` of the bars, then evaluate walk-forward only inside the held-out tail.
    Registers the final model when ``registry`` is given."""
    spec = spec or DEFAULT_SPEC
    hparams: dict[str, Any] = {"epochs": epochs}
    tuned = None
    holdout_start = None
    test_size = None
    if trials > 0:
        if storage is None:
            raise ValueError("tuning needs an Optuna storage URL")
        cut = int(len(candles) * (1 - holdout))
        holdout_start = candles.index[cut]
        tuned, _ = tune_price_model(
            candles.iloc[:cut],
            arch=arch,
            trials=trials,
            storage=storage,
            target=target,
            horizon=horizon,
            window=window,
            spec=spec,
            epochs=epochs,
            seed=seed,
        )
        hparams = dict(tuned)
        validation = "walk-forward"
        # every test window inside the held-out tail (the dataset drops the last `horizon` unlabelled bars)
        test_size = max((len(candles) - cut - horizon) // folds, 1)
    result = train_price_model(
        candles,
        arch=arch,
        target=target,
        horizon=horizon,
        window=window,
        spec=spec,
        validation=validation,
        folds=folds,
        test_size=test_size,
        hparams=hparams,
        seed=seed,
    )
    version = None
    if registry is not None:
        a = candles.attrs
        name = (
            name
            or f"{arch}-{str(a.get('symbol', 'data')).replace('/', '').replace(':', '')}-{a.get('timeframe', '')}-{target}"
        )
        meta = {
            "arch": arch,
            "target": target,
            "horizon": horizon,
            "window": result.window,
            "hparams": result.hparams,
            "spec": result.spec,
            "feature_names": result.feature_names,
            "validation": {
                "method": validation,
                "folds": folds,
                "tuned_trials": trials,
                "holdout_start": str(holdout_start) if holdout_start is not None else None,
            },
            "metrics": result.metrics,
            "folds": result.folds.astype(str).to_dict(orient="records"),
            "training": result.history,
            "data": {
                "exchange": a.get("exchange"),
                "symbol": a.get("symbol"),
                "timeframe": a.get("timeframe"),
                "start": str(candles.index[0]),
                "end": str(candles.index[-1]),
                "rows": len(candles),
                "sha256": candles_hash(candles),
            },
            "seed": seed,
            "torch_threads": int(os.environ.get("WORKBENCH__ML__TORCH_THREADS", "1")),
        }
        assert result.model is not None and result.scaler is not None
        version = registry.save(name, result.model, result.scaler, meta)
        if promote:
            registry.promote(name, version)
    return TrainOutcome(result, name, version, tuned, holdout_start)
