"""Walk-forward optimisation with Optuna: parameters are chosen on each training window and judged only on
the test window that follows it.

For fold i of K: train on blocks [0..i] (``mode='expanding'``) or block i alone (``'rolling'``) of K+1 equal
blocks of bars, test on block i+1. Each fold is one Optuna study (TPE sampler, seeded) maximising the
training Sharpe; studies live in an RDB storage (SQLite by default, any SQLAlchemy URL) under names derived
from the strategy, the data and the fold, so an interrupted run resumes and completes only the missing trials.
The report gives per fold the in-sample (best training) and out-of-sample Sharpe, their gap, the training
Sharpe deflated for the number of trials (DSR), and the metrics of the stitched out-of-sample equity.

Several workers (processes, Dask tasks, machines) may share the studies. :func:`open_storage` creates the
schema safely when they start together on a fresh storage (under a file lock for SQLite, retried for a
server database), and turns on Optuna's heartbeat: a trial whose worker died (SIGKILL, lost machine) stops
beating, the next worker marks it FAIL once ``grace_period`` has passed and enqueues its parameters again.
The budget counts only trials that produced a result (COMPLETE or PRUNED), so a dead worker's trial never
uses it up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.backtest.benchmark import buy_and_hold_curve
from workbench.backtest.engine import BacktestConfig, run_backtest
from workbench.backtest.metrics import compute_metrics, deflated_sharpe, periods_per_year
from workbench.backtest.sweep import evaluate
from workbench.ml.studies import HEARTBEAT_S, open_storage
from workbench.strategies.base import ParamError, Strategy, get_strategy

__all__ = ["FoldResult", "OptimizeResult", "open_storage", "optimize", "walk_forward_splits"]

log = logging.getLogger(__name__)


def walk_forward_splits(n: int, folds: int, mode: str = "expanding") -> list[tuple[slice, slice]]:
    """``folds`` (train, test) pairs of bar slices over ``n`` bars cut into ``folds + 1`` equal blocks."""
    if folds < 1:
        raise ValueError("walk-forward needs at least 1 fold")
    if mode not in ("expanding", "rolling"):
        raise ValueError(f"mode must be 'expanding' or 'rolling', not {mode!r}")
    edges = np.linspace(0, n, folds + 2).astype(int)
    if np.any(np.diff(edges) < 10):
        raise ValueError(f"{n} bars are too few for {folds} walk-forward folds")
    out = []
    for i in range(folds):
        train = slice(0 if mode == "expanding" else int(edges[i]), int(edges[i + 1]))
        out.append((train, slice(int(edges[i + 1]), int(edges[i + 2]))))
    return out


@dataclass
class FoldResult:
    fold: int
    train: tuple[str, str]
    test: tuple[str, str]
    best_params: dict[str, Any]
    is_sharpe: float
    oos_sharpe: float
    oos_return: float
    n_trials: int
    dsr: float
    study: str


@dataclass
class OptimizeResult:
    strategy: str
    folds: list[FoldResult]
    oos_equity: pd.Series
    oos_metrics: dict[str, float]
    storage: str
    mode: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_sharpe(self) -> float:
        return float(np.nanmean([f.is_sharpe for f in self.folds]))

    @property
    def oos_sharpe(self) -> float:
        return float(np.nanmean([f.oos_sharpe for f in self.folds]))

    @property
    def gap(self) -> float:
        """Mean in-sample minus mean out-of-sample Sharpe: how much of the fit does not carry forward."""
        return self.is_sharpe - self.oos_sharpe

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "fold": f.fold,
                    "train": f"{f.train[0]} .. {f.train[1]}",
                    "test": f"{f.test[0]} .. {f.test[1]}",
                    **{f"param.{k}": v for k, v in f.best_params.items()},
                    "is_sharpe": f.is_sharpe,
                    "oos_sharpe": f.oos_sharpe,
                    "oos_return": f.oos_return,
                    "dsr": f.dsr,
                    "trials": f.n_trials,
                }
                for f in self.folds
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "strategy": self.strategy,
            "mode": self.mode,
            "storage": self.storage,
            "is_sharpe_mean": clean(self.is_sharpe),
            "oos_sharpe_mean": clean(self.oos_sharpe),
            "gap": clean(self.gap),
            "folds": [{k: clean(v) for k, v in f.__dict__.items()} for f in self.folds],
            "oos_metrics": {k: clean(float(v)) for k, v in self.oos_metrics.items()},
            "oos_equity": [[t.isoformat(), float(v)] for t, v in self.oos_equity.items()],
        }


def _study_name(
    cls: type[Strategy], data: pd.DataFrame, config: BacktestConfig, fold: int, folds: int, mode: str
) -> str:
    a = data.attrs
    ident = json.dumps(
        [
            cls.name,
            a.get("exchange"),
            a.get("symbol"),
            a.get("timeframe"),
            str(data.index[0]),
            str(data.index[-1]),
            len(data),
            config.model_dump(),
            fold,
            folds,
            mode,
        ],
        default=str,
        sort_keys=True,
    )
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    sym = str(a.get("symbol", "data")).replace("/", "")
    return f"{cls.name}-{sym}-{a.get('timeframe', '')}-wf{fold + 1}of{folds}-{mode}-{digest}"


def optimize(
    data: pd.DataFrame,
    strategy: str | type[Strategy],
    *,
    trials: int = 50,
    folds: int = 3,
    mode: str = "expanding",
    config: BacktestConfig | None = None,
    storage: str | None = None,
    seed: int = 42,
    fixed: Mapping[str, Any] | None = None,
    heartbeat_interval: int | None = HEARTBEAT_S,
    grace_period: int | None = None,
    progress: Callable[[int, int, int, int], None] | None = None,
) -> OptimizeResult:
    """Walk-forward optimise a single-asset strategy on Candles ``data`` (see the module docstring).
    ``storage``: an Optuna RDB URL (default: the configured ``Settings.optuna_storage``, i.e.
    ``ml.optuna.storage`` with ``{data}`` the data folder, never a file in the current folder).

    ``progress(fold, folds, done, trials)`` is called before each fold and after each of its trials (``fold``
    counts from 0; ``done`` is the fold's finished trials, those of other workers on a shared study included)."""
    import optuna

    if storage is None:
        from workbench.config import load_settings

        storage = load_settings().optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cls = get_strategy(strategy) if isinstance(strategy, str) else strategy
    config = config or BacktestConfig()
    fixed = dict(fixed or {})
    space = {k: v for k, v in cls.search_space().items() if k not in fixed}
    if not space:
        raise ParamError(f"strategy {cls.name!r}: nothing to optimise")
    splits = walk_forward_splits(len(data), folds, mode)
    ppy = periods_per_year(data.index)
    results: list[FoldResult] = []
    oos_parts: list[pd.Series] = []
    rdb = open_storage(storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for i, (tr, te) in enumerate(splits):
        train = data.iloc[tr]
        name = _study_name(cls, data, config, i, folds, mode)
        study = optuna.create_study(
            study_name=name,
            storage=rdb,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed + i),
            load_if_exists=True,
        )

        def objective(trial: Any, train: pd.DataFrame = train) -> float:
            params = {**cls.suggest(trial), **fixed}
            try:
                cls.make_params(params)
            except ParamError as e:
                raise optuna.TrialPruned(str(e)) from None
            row = evaluate(train, cls, [params], config)[0]
            s = row["sharpe"]
            if not np.isfinite(s):
                raise optuna.TrialPruned("no finite Sharpe (no trade?)")
            return float(s)

        # several workers (processes, Dask tasks, machines) may share this study through its RDB storage:
        # they stop together once the study holds `trials` trials with a result; a dead worker's RUNNING
        # trial is failed (and its parameters enqueued again) here once its heartbeat is stale
        if heartbeat_interval is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        budget = optuna.study.MaxTrialsCallback(trials, states=counted)
        done = len(study.get_trials(deepcopy=False, states=counted))
        callbacks: list[Any] = [budget]
        if progress is not None:
            progress(i, len(splits), min(done, trials), trials)

            def tick(study: Any, trial: Any, i: int = i) -> None:
                n = len(study.get_trials(deepcopy=False, states=counted))
                progress(i, len(splits), min(n, trials), trials)

            callbacks.append(tick)
        if done < trials:
            study.optimize(objective, n_trials=trials - done, callbacks=callbacks)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise ParamError(
                f"fold {i + 1}: no trial produced a result (every combination invalid or without trades)"
            )
        best = study.best_trial
        params = {**best.params, **fixed}
        sharpes = np.array([t.value for t in complete]) / math.sqrt(ppy)
        dsr = (
            deflated_sharpe(
                best.value / math.sqrt(ppy),
                tr.stop - tr.start,
                0.0,
                3.0,
                len(complete),
                float(np.var(sharpes, ddof=1)),
            )
            if len(complete) > 1
            else float("nan")
        )
        # out of sample: history up to the end of the test window (for warm-up), simulated on the test window
        oos = run_backtest(data.iloc[: te.stop], cls(**params), config, start=data.index[te.start])
        oos_parts.append(oos.equity / config.init_cash)
        results.append(
            FoldResult(
                fold=i + 1,
                train=(str(train.index[0]), str(train.index[-1])),
                test=(str(data.index[te.start]), str(data.index[te.stop - 1])),
                best_params=params,
                is_sharpe=float(best.value),
                oos_sharpe=float(oos.metrics["sharpe"]),
                oos_return=float(oos.metrics["total_return"]),
                n_trials=len(complete),
                dsr=float(dsr),
                study=name,
            )
        )
        log.info(
            "fold %d: best %s IS sharpe %.2f OOS sharpe %.2f",
            i + 1,
            params,
            best.value,
            oos.metrics["sharpe"],
        )
    # stitch: each fold's growth applied to the capital left by the previous folds
    equity, level = [], config.init_cash
    for part in oos_parts:
        equity.append(part * level)
        level = float(part.iloc[-1] * level)
    oos_equity = pd.concat(equity).rename("oos_equity")
    first = oos_equity.index[0] - (oos_equity.index[1] - oos_equity.index[0])
    curve = pd.concat([pd.Series([config.init_cash], index=[first]), oos_equity])
    # beta as everywhere: against buy and hold of the symbol over the same (out-of-sample) bars
    bench = buy_and_hold_curve(data.loc[data.index.isin(oos_equity.index)])
    return OptimizeResult(
        cls.name, results, oos_equity, compute_metrics(curve, benchmark=bench), storage, mode
    )
