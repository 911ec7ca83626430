"""Train (optionally tune), evaluate out of sample and register a price model in one call.

Promotion is guarded: a model that loses to one of its own baselines out of sample (direction: a baseline
with a higher accuracy; return: one with a lower RMSE, computed on the same rows) is registered but not
promoted unless ``force=True``; :func:`baseline_verdict` says why. The pipeline applies the same check.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from workbench.ml.datasets import DEFAULT_SPEC
from workbench.ml.price import PriceModelResult, train_price_model
from workbench.ml.registry import Registry, candles_hash
from workbench.ml.tune import tune_price_model

__all__ = ["PROMOTION_METRIC", "TrainOutcome", "baseline_verdict", "train_model"]

log = logging.getLogger(__name__)

# target -> (out-of-sample metric a model must not lose on to any baseline, higher is better)
PROMOTION_METRIC: dict[str, tuple[str, bool]] = {"direction": ("accuracy", True), "return": ("rmse", False)}


def baseline_verdict(metrics: Mapping[str, Mapping[str, float]], arch: str, target: str) -> str | None:
    """None when ``arch`` loses to none of its baselines on the promotion metric (ties do not lose), else
    the reason, naming the metric and each baseline that beats it (``metrics``: the training's out-of-sample
    table, model and baselines -> metric -> value)."""
    if target not in PROMOTION_METRIC:
        return f"no promotion metric for target {target!r}"
    metric, higher = PROMOTION_METRIC[target]
    own = (metrics.get(arch) or {}).get(metric)
    if own is None or not math.isfinite(own):
        return f"{arch} has no finite out-of-sample {metric}"
    better = {
        name: float(m[metric])
        for name, m in metrics.items()
        if name != arch
        and math.isfinite(m.get(metric, math.nan))
        and (m[metric] > own if higher else m[metric] < own)
    }
    if not better:
        return None
    listed = ", ".join(
        f"{name} {v:.4f}" for name, v in sorted(better.items(), key=lambda kv: -kv[1] if higher else kv[1])
    )
    return (
        f"{arch} loses to its baseline{'s' if len(better) > 1 else ''} out of sample: {metric} {own:.4f} "
        f"({'higher' if higher else 'lower'} is better) vs {listed}"
    )


@dataclass
class TrainOutcome:
    result: PriceModelResult
    name: str | None
    version: str | None
    tuned: dict[str, Any] | None
    holdout_start: pd.Timestamp | None
    promoted: bool = False
    promotion_note: str | None = None  # why a requested promotion was refused, or what a forced one overrode


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
    force: bool = False,
    spec: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Without ``trials``: walk-forward (or purged k-fold) evaluation over all the data. With ``trials``: tune
    on the first ``1 - holdout`` of the bars, then evaluate walk-forward only inside the held-out tail.
    Studies go to ``storage`` (default: the configured ``Settings.optuna_storage``). Registers the final model
    when ``registry`` is given; ``promote`` promotes it unless it loses to a
    baseline (:func:`baseline_verdict`), ``force`` promotes it anyway (with a warning)."""
    spec = spec or DEFAULT_SPEC
    hparams: dict[str, Any] = {"epochs": epochs}
    tuned = None
    holdout_start = None
    test_size = None
    if trials > 0:
        if storage is None:
            from workbench.config import load_settings

            storage = load_settings().optuna_storage
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
            "torch_threads": torch.get_num_threads(),  # what the training ran with
        }
        assert result.model is not None and result.scaler is not None
        version = registry.save(name, result.model, result.scaler, meta)
    promoted, note = False, None
    if promote and registry is not None and version is not None:
        reason = baseline_verdict(result.metrics, arch, target)
        if reason is None or force:
            registry.promote(name, version)
            promoted = True
        if reason is not None:
            note = f"{name} {version} " + (
                f"promoted although {reason} (forced)" if force else f"not promoted: {reason}"
            )
            log.warning("%s", note)
    return TrainOutcome(result, name, version, tuned, holdout_start, promoted, note)
