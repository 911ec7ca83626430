"""Lookahead check: a strategy's past decisions must not change when the future is cut off.

The strategy is run on the full history and on truncated histories ``data[:k]`` for many cut points k; the
targets at every bar before k must be identical (NaN equals NaN). A strategy that reads a later bar (a
``shift(-1)``, a centred window, a full-sample normalisation) changes some past decision and fails.

Where to cut. A random cut at k only exposes a peek that changes the decision of a bar near k, so a strategy
that peeks on a few bars (0.3 % of them is enough to turn a backtest into a fortune) slips through a few
dozen random cuts. A peek that matters changes a decision, so the check cuts **at every bar where the
full-history target changes** (each signal, as freqtrade's lookahead analysis does): once right after the
bar (is the new decision made without the bars after it?) and once right before it (is the old decision
kept without this bar?), plus ``n_cuts`` cuts spread over the history (half evenly spaced, half random).
Each cut costs one ``target()`` call on ``k`` bars; when there are more than ``max_cuts`` signal cuts, a
seeded random subset of the signal bars is checked and the report says so.

The report lists every bar whose decision changed under some truncation (its time, asset column, the
full-history value, the truncated value and the cut that exposed it): these are the bars that leaked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.strategies.base import Strategy

__all__ = ["LookaheadReport", "check_lookahead", "signal_bars"]

MAX_LISTED = 1000
"""Leaking bars kept in a report (the count is always exact)."""


@dataclass
class LookaheadReport:
    strategy: str
    params: dict
    cuts: list[int]
    """Every cut made: the truncated history is ``data[:k]`` (bars 0..k-1)."""
    bars: int
    failures: list[dict] = field(default_factory=list)
    """One entry per cut whose targets differ: the cut, the first differing bar and how many differ."""
    signal_bars: int = 0
    """Bars where the full-history target changes."""
    signal_bars_checked: int = 0
    """Of those, the ones cut at (all of them unless ``max_cuts`` capped the check)."""
    random_cuts: int = 0
    skipped: list[int] = field(default_factory=list)
    """Cuts shorter than ``min_bars`` on which ``target()`` raised (too little history to decide): unchecked."""
    skipped_error: str = ""
    leaks: list[dict] = field(default_factory=list)
    """Bars whose decision changed under a truncation (first ``MAX_LISTED``, in time order)."""
    n_leaks: int = 0
    """How many (bar, column) decisions leaked in all."""

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def n_cuts(self) -> int:
        return len(self.cuts)

    @property
    def leaking_times(self) -> list[str]:
        """The distinct times of the leaking bars listed, in order."""
        return list(dict.fromkeys(x["time"] for x in self.leaks))

    def _coverage(self) -> str:
        if self.signal_bars_checked < self.signal_bars:
            at = (
                f"at {self.signal_bars_checked} of {self.signal_bars} signal bars "
                "(a random subset; raise max_cuts to check all)"
            )
        else:
            at = f"at all {self.signal_bars} signal bars"
        skipped = (
            f"; {len(self.skipped)} short ones skipped, target() raised: {self.skipped_error}"
            if self.skipped
            else ""
        )
        return f"{self.n_cuts} truncations of {self.bars} bars: {at} and {self.random_cuts} spread{skipped}"

    def summary(self, max_times: int = 10) -> str:
        if self.ok:
            return f"{self.strategy} {self.params}: no lookahead ({self._coverage()})"
        f = self.failures[0]
        times = self.leaking_times
        shown = ", ".join(times[:max_times]) + (", ..." if len(times) > max_times else "")
        return (
            f"{self.strategy} {self.params}: LOOKAHEAD: {self.n_leaks} decisions leaked; with data cut after bar "
            f"{f['cut'] - 1} ({f['cut_time']}), the decision at {f['time']} ({f['column']}) changed from "
            f"{f['full']} to {f['truncated']}; {len(self.failures)} of {self.n_cuts} truncations differ "
            f"({self._coverage()}). Leaking bars: {shown}"
        )

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not np.isfinite(v) else v

        def rows(xs: list[dict]) -> list[dict]:
            return [{k: clean(v) for k, v in x.items()} for x in xs]

        return {
            "strategy": self.strategy,
            "params": self.params,
            "ok": self.ok,
            "bars": self.bars,
            "n_cuts": self.n_cuts,
            "signal_bars": self.signal_bars,
            "signal_bars_checked": self.signal_bars_checked,
            "random_cuts": self.random_cuts,
            "skipped_cuts": self.skipped,
            "skipped_error": self.skipped_error,
            "n_failed_cuts": len(self.failures),
            "n_leaks": self.n_leaks,
            "leaks": rows(self.leaks),
            "failures": rows(self.failures),
            "cuts": self.cuts,
        }


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
        if isinstance(out, pd.Series):  # one asset: its column is the symbol
            return out.to_frame(data.attrs.get("symbol") or out.name or strategy.name)
    return out.to_frame() if isinstance(out, pd.Series) else out


def _aligned(frames: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Several assets on their common bars, so that a cut at position k is one moment for all of them."""
    idx = None
    for df in frames.values():
        idx = df.index if idx is None else idx.intersection(df.index)
    return {s: (df if df.index.equals(idx) else df.loc[idx]) for s, df in frames.items()}


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def signal_bars(target: pd.Series | pd.DataFrame) -> np.ndarray:
    """Positions i >= 1 where the target (any column) differs from bar i-1 (NaN equals NaN)."""
    a = np.asarray(target, dtype="float64")
    if a.ndim == 1:
        a = a[:, None]
    if len(a) < 2:
        return np.zeros(0, dtype=np.int64)
    changed = ~_same(a[1:], a[:-1]).all(axis=1)
    return np.flatnonzero(changed) + 1


def check_lookahead(
    strategy: Strategy,
    data: pd.DataFrame | Mapping[str, pd.DataFrame],
    *,
    n_cuts: int = 20,
    max_cuts: int = 10_000,
    min_bars: int | None = None,
    seed: int = 0,
    features: pd.DataFrame | None = None,
) -> LookaheadReport:
    """Compare the full-history targets with targets computed on truncated histories: one cut after and one
    before every bar where the full target changes (at most ``max_cuts`` of these), plus ``n_cuts`` spread
    over the history from ``min_bars`` on (default: a tenth of it). A cut shorter than ``min_bars`` on which
    ``target()`` raises is skipped and counted (too little history); a longer one is an error. ``features`` (e.g. model predictions) are
    truncated with the data, so the check covers the strategy's own logic."""
    if isinstance(data, Mapping):
        data = _aligned(data)
    first = next(iter(data.values())) if isinstance(data, Mapping) else data
    n = len(first)
    full = _targets(strategy, data, None, features).reindex(first.index)
    lo = min_bars if min_bars is not None else max(2, n // 10)
    if n - lo < 2:
        raise ValueError(f"too little data for a lookahead check: {n} bars")
    if max_cuts < 0 or n_cuts < 0:
        raise ValueError("n_cuts and max_cuts must not be negative")
    rng = np.random.default_rng(seed)

    changes = signal_bars(full)
    checked = changes
    if 2 * len(changes) > max_cuts:
        checked = np.sort(rng.choice(changes, size=max_cuts // 2, replace=False))
    # after the signal bar (data[:i+1]) and before it (data[:i]); a cut needs at least 2 bars
    signal_cuts = {int(k) for i in checked for k in (i + 1, i) if 2 <= k < n}
    spread = set(np.linspace(lo, n - 1, n_cuts // 2, dtype=int).tolist()) | set(
        rng.integers(lo, n - 1, n_cuts - n_cuts // 2).tolist()
    )
    cuts = sorted(signal_cuts | {int(k) for k in spread})

    report = LookaheadReport(
        strategy.name,
        strategy.params.model_dump(),
        cuts,
        n,
        signal_bars=len(changes),
        signal_bars_checked=len(checked),
        random_cuts=len(spread - signal_cuts),
    )
    columns = list(full.columns)
    ref_all = full.to_numpy(dtype="float64")
    leak_cut = np.full(ref_all.shape, -1, dtype=np.int64)  # the first cut that changed each decision
    leak_val = np.full(ref_all.shape, np.nan)
    for k in cuts:
        try:
            part = _targets(strategy, data, k, features)
        except Exception as e:
            if k < lo:  # a history shorter than min_bars may be too short for the strategy: say so, go on
                report.skipped.append(int(k))
                report.skipped_error = report.skipped_error or f"{type(e).__name__}: {e}"
                continue
            raise ValueError(
                f"strategy {strategy.name!r}: target() failed on the history cut after bar {k - 1} "
                f"({first.index[k - 1]}): {type(e).__name__}: {e}"
            ) from e
        part = part.reindex(index=first.index[:k], columns=columns)
        a, b = ref_all[:k], part.to_numpy(dtype="float64")
        diff = ~_same(a, b)
        if not diff.any():
            continue
        i, j = np.argwhere(diff)[0]
        report.failures.append(
            {
                "cut": int(k),
                "cut_time": str(first.index[k - 1]),
                "time": str(first.index[i]),
                "column": str(columns[j]),
                "full": float(a[i, j]),
                "truncated": float(b[i, j]),
                "n_changed": int(diff.sum()),
            }
        )
        new = diff & (leak_cut[:k] < 0)
        leak_cut[:k][new] = k
        leak_val[:k][new] = b[new]

    where = np.argwhere(leak_cut >= 0)  # row-major: time order, then column
    report.n_leaks = len(where)
    for i, j in where[:MAX_LISTED]:
        k = int(leak_cut[i, j])
        report.leaks.append(
            {
                "time": str(first.index[i]),
                "column": str(columns[j]),
                "full": float(ref_all[i, j]),
                "truncated": float(leak_val[i, j]),
                "cut_time": str(first.index[k - 1]),
            }
        )
    return report
