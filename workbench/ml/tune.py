"""Optuna tuning of a price model's architecture and training hyperparameters.

The objective is the mean best validation loss over walk-forward folds of the DEVELOPMENT data only (the data
before the held-out test period), with the last fold's running loss reported for median pruning. The test
period is never seen by the search: :func:`workbench.ml.price.train_price_model` then evaluates the tuned
model on walk-forward folds inside the held-out period. Studies live in an RDB storage (SQLite by default) and
resume by name.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from workbench.ml.datasets import DEFAULT_SPEC, make_dataset
from workbench.ml.models import SEQUENCE_ARCHS, search_space
from workbench.ml.price import _fit_model, _scale, _split_tail
from workbench.ml.splits import WalkForward
from workbench.ml.studies import open_storage

__all__ = ["tune_price_model"]


def _suggest(trial: Any, arch: str) -> dict[str, Any]:
    out = {}
    for name, (kind, lo, hi, log) in search_space(arch).items():
        out[name] = (
            trial.suggest_int(name, lo, hi, log=log)
            if kind == "int"
            else trial.suggest_float(name, lo, hi, log=log)
        )
    return out


def tune_price_model(
    candles: pd.DataFrame,
    *,
    arch: str,
    trials: int,
    storage: str,
    target: str = "direction",
    horizon: int = 24,
    window: int | None = None,
    spec: dict[str, Any] | None = None,
    folds: int = 3,
    epochs: int = 20,
    seed: int = 42,
    study_name: str | None = None,
) -> tuple[dict[str, Any], Any]:
    """Tune on ``candles`` (pass only the development period). Returns the best hyperparameters and the study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = spec or DEFAULT_SPEC
    window = window or (32 if arch in SEQUENCE_ARCHS else 1)
    ds = make_dataset(candles, spec=spec, target=target, horizon=horizon, window=window)
    splits = list(WalkForward(folds, horizon=horizon, embargo=horizon).split(len(ds)))
    if study_name is None:
        ident = json.dumps(
            [
                arch,
                target,
                horizon,
                window,
                spec,
                str(ds.index[0]),
                str(ds.index[-1]),
                len(ds),
                folds,
                epochs,
                seed,
            ],
            sort_keys=True,
            default=str,
        )
        study_name = f"tune-{arch}-{target}-h{horizon}-{hashlib.sha256(ident.encode()).hexdigest()[:10]}"
    study = optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage, heartbeat_interval=None),  # the schema made under a lock
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
    )

    def objective(trial: Any) -> float:
        hp = {**_suggest(trial, arch), "epochs": epochs}
        losses = []
        for k, (train, _test) in enumerate(splits):  # the test blocks are not used: validation tails only
            fit, val = _split_tail(train, horizon)
            _, X = _scale(ds, fit)
            _, trainer = _fit_model(arch, X, ds.y, fit, val, target, hp, seed + k)
            losses.append(trainer.history.best_valid)
            trial.report(float(np.mean(losses)), step=k)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(losses))

    budget = optuna.study.MaxTrialsCallback(trials, states=None)  # shared by every worker on this study
    done = len([t for t in study.trials if t.state.is_finished()])
    if done < trials:
        study.optimize(objective, n_trials=trials - done, callbacks=[budget])
    best = {**study.best_params, "epochs": epochs}
    return best, study
