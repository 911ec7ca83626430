"""Lookahead check: a strategy's past decisions must not change when the future is cut off.

The strategy is run on the full history and on truncated histories ``data[:k]`` for several cut points k; the
targets at every bar before k must be identical (NaN equals NaN). A strategy that reads a later bar (a
``shift(-1)``, a centred window, a full-sample normalisation) changes some past decision and fails, with
the first bar where it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench.strategies.base import Strategy

__all__ = ["LookaheadReport", "check_lookahead"]


@dataclass
class LookaheadReport:
    strategy: str
    params: dict
    cuts: list[int]
    bars: int
    failures: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if self.ok:
            return f"{self.strategy} {self.params}: no lookahead ({len(self.cuts)} truncations of {self.bars} bars)"
        f = self.failures[0]
        return (
            f"{self.strategy} {self.params}: LOOKAHEAD: with data cut after bar {f['cut']} ({f['cut_time']}), "
            f"the decision at {f['time']} ({f['column']}) changed from {f['full']} to {f['truncated']}; "
            f"{len(self.failures)} of {len(self.cuts)} truncations differ"
        )


def _targets(
    strategy: Strategy,
    data: pd.DataFrame | Mapping[str, pd.DataFrame],
    k: int | None,
    features: pd.DataFrame | None = None,
) -> pd.DataFrame:
    f = features if (features is None or k is None) else features.iloc[:k]
    if isinstance(data, Mapping):
        part = {s: (df if k is None else df.iloc[:k]) for s, df in data.items()}
        if strategy.assets == 1:
            return pd.DataFrame({s: strategy.target(df, f) for s, df in part.items()})
        out = strategy.target(part, f)
    else:
        out = strategy.target(data if k is None else data.iloc[:k], f)
    return out.to_frame() if isinstance(out, pd.Series) else out


def check_lookahead(
    strategy: Strategy,
    data: pd.DataFrame | Mapping[str, pd.DataFrame],
    *,
    n_cuts: int = 20,
    min_bars: int | None = None,
    seed: int = 0,
    features: pd.DataFrame | None = None,
) -> LookaheadReport:
    """Compare the full-history targets with targets computed on ``n_cuts`` truncated histories (``features``,
    e.g. model predictions, are truncated with the data: the check then covers the strategy's own logic)."""
    first = next(iter(data.values())) if isinstance(data, Mapping) else data
    n = len(first)
    full = _targets(strategy, data, None, features)
    lo = min_bars if min_bars is not None else max(2, n // 10)
    if n - lo < 2:
        raise ValueError(f"too little data for a lookahead check: {n} bars")
    rng = np.random.default_rng(seed)
    cuts = sorted(
        set(np.linspace(lo, n - 1, n_cuts // 2, dtype=int))
        | set(rng.integers(lo, n - 1, n_cuts - n_cuts // 2))
    )
    report = LookaheadReport(strategy.name, strategy.params.model_dump(), [int(k) for k in cuts], n)
    for k in cuts:
        part = _targets(strategy, data, int(k), features)
        ref = full.loc[part.index, part.columns]
        a, b = ref.to_numpy(dtype="float64"), part.to_numpy(dtype="float64")
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if not same.all():
            i, j = np.argwhere(~same)[0]
            report.failures.append(
                {
                    "cut": int(k),
                    "cut_time": str(part.index[-1]),
                    "time": str(part.index[i]),
                    "column": str(part.columns[j]),
                    "full": float(a[i, j]),
                    "truncated": float(b[i, j]),
                }
            )
    return report
