"""Scale-out on existing engines, not a home-made scheduler.

* **Dask** (``distributed``): sweeps and walk-forward optimisations over many symbols, and whole pipeline
  runs per symbol, fan out as tasks on a cluster: :func:`client` gives a ``LocalCluster`` on this machine or
  connects to a scheduler address (``tcp://host:8786``) in production.
* **Optuna RDB storage**: any number of workers (processes, Dask tasks, machines) can work on one study by
  pointing at the same storage URL (``postgresql://...``, ``mysql://...``, SQLite for one machine); the
  studies of :mod:`workbench.backtest.optimize` stop together once the study holds its trial budget. The
  schema is created safely by whichever workers start first, and a dead worker's trial is failed by
  heartbeat and retried instead of holding the budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["client", "init_storage", "optimize_symbols", "pipeline_symbols", "sweep_symbols"]


def client(address: str | None = None, *, n_workers: int = 2, threads_per_worker: int = 1) -> Any:
    """A Dask client: connect to ``address`` or start a LocalCluster of ``n_workers`` processes."""
    from dask.distributed import Client, LocalCluster

    if address:
        return Client(address)
    cluster = LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=None
    )
    return Client(cluster)


def _sweep_one(
    candles: pd.DataFrame, strategy: str, grid: Mapping[str, Sequence[Any]], config: dict[str, Any]
) -> pd.DataFrame:
    from workbench.backtest.engine import BacktestConfig
    from workbench.backtest.sweep import sweep

    res = sweep(candles, strategy, grid, BacktestConfig(**config))
    return res.table.assign(symbol=candles.attrs.get("symbol"), engine=res.engine)


def sweep_symbols(
    dask_client: Any,
    frames: Mapping[str, pd.DataFrame],
    strategy: str,
    grid: Mapping[str, Sequence[Any]],
    config: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One sweep per symbol as Dask tasks; the tables concatenated with a ``symbol`` column."""
    futures = [
        dask_client.submit(_sweep_one, df, strategy, dict(grid), dict(config or {}), pure=False)
        for df in frames.values()
    ]
    return pd.concat(dask_client.gather(futures), ignore_index=True)


def _optimize_one(candles: pd.DataFrame, strategy: str, kw: dict[str, Any]) -> dict[str, Any]:
    from workbench.backtest.optimize import optimize

    r = optimize(candles, strategy, **kw)
    return {
        "symbol": candles.attrs.get("symbol"),
        "is_sharpe": r.is_sharpe,
        "oos_sharpe": r.oos_sharpe,
        "gap": r.gap,
        "folds": [f.__dict__ for f in r.folds],
    }


def init_storage(url: str) -> None:
    """Create an Optuna RDB storage's schema now (optional: every worker creates it safely on first use, see
    :func:`workbench.backtest.optimize.open_storage`)."""
    from workbench.backtest.optimize import open_storage

    open_storage(url, heartbeat_interval=None)


def optimize_symbols(
    dask_client: Any, frames: Mapping[str, pd.DataFrame], strategy: str, **kw: Any
) -> list[dict[str, Any]]:
    """Walk-forward optimisation per symbol as Dask tasks, every study in the shared ``storage`` (default: the
    configured ``Settings.optuna_storage``, resolved here once so that every worker uses the same one)."""
    if kw.get("storage") is None:
        from workbench.config import load_settings

        kw["storage"] = load_settings().optuna_storage
    init_storage(kw["storage"])
    futures = [dask_client.submit(_optimize_one, df, strategy, kw, pure=False) for df in frames.values()]
    return dask_client.gather(futures)


def _pipeline_one(
    config_dir: str | None, home: str, pipeline: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    from workbench.config import load_settings
    from workbench.pipeline import PipelineSpec, run_pipeline

    s = load_settings(config_dir, env={"WORKBENCH_HOME": home})
    return run_pipeline(s, PipelineSpec.load(pipeline), overrides=overrides)


def pipeline_symbols(
    dask_client: Any,
    settings: Any,
    pipeline: str,
    symbols: Sequence[str],
    overrides: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One whole pipeline run per symbol, as Dask tasks; returns the run manifests."""
    futures = [
        dask_client.submit(
            _pipeline_one,
            str(settings.config_source) if settings.config_source else None,
            str(settings.data_dir),
            pipeline,
            {**dict(overrides or {}), "symbol": s},
            pure=False,
        )
        for s in symbols
    ]
    return dask_client.gather(futures)
