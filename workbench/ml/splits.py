"""Leak-free cross-validation splitters for time series whose labels look ``horizon`` bars ahead.

Conventions shared by every splitter here
-----------------------------------------
* Samples are bars at integer positions ``0 .. n-1`` in time order; every split yields
  ``(train, test)`` as sorted ``int64`` position arrays (use ``.iloc``), never labels or timestamps.
* The label of bar ``t`` uses bars ``t .. t + horizon`` (both ends included), so its *label window* is
  ``[t, t + horizon]``. ``horizon`` must be the horizon the labels were built with (the forward-return
  horizon, or the triple barrier's maximum holding period), in bars. ``horizon=0`` means the label uses only
  its own bar. ``embargo`` is also a number of bars. All sizes (``train_size``, ``test_size``) are in bars.
* Purging: a training sample is dropped when its label window intersects the label window of any test
  sample. For a contiguous test block ``[a, b]`` the test labels span ``[a, b + horizon]``, so the purged
  bars are ``[a - horizon, a)`` before the block and ``(b, b + horizon]`` after it.
* Embargo (after a test block): the ``embargo`` bars following the purged zone, ``(b + horizon,
  b + horizon + embargo]``, are dropped as well (serial correlation between features right after the
  test period and the test labels). In particular no training sample ever lies in ``(b, b + embargo]``.
* Tail bars whose label window runs past the data (``t > n - 1 - horizon``) have no complete label; the
  splitters keep them (the caller drops NaN labels), exactly as they keep every other bar.
* ``split`` accepts an int ``n``, or anything with a length (array, list, ``pd.Index``, ``Series``,
  ``DataFrame``); a pandas index (or a Series/DataFrame's index) must be strictly increasing (time order,
  one row per bar), otherwise bars would not be positions. ``split(X, y=None, groups=None)`` and
  ``get_n_splits(X=None, y=None, groups=None)`` follow scikit-learn, so the objects work as ``cv=``.
* Bad arguments raise ``ValueError`` with the reason, including data too short for the requested folds,
  horizon and embargo.

>>> cv = PurgedKFold(5, horizon=24, embargo=12)
>>> for train, test in cv.split(features.index):
...     model.fit(X.iloc[train], y.iloc[train])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "CombinatorialPurgedCV",
    "PurgedKFold",
    "WalkForward",
    "purged_train_indices",
]

Split = tuple[np.ndarray, np.ndarray]


# ----------------------------------------------------------------------------------------------- helpers
def _as_count(value: Any, name: str, *, minimum: int) -> int:
    """An int >= ``minimum`` (numpy ints accepted; bools, floats and strings refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer number of bars/splits, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _n_samples(X: Any) -> int:
    """Number of bars in ``X`` (an int, or anything with a length); a pandas index must be in time order."""
    if isinstance(X, bool):
        raise ValueError(f"expected a number of samples or an index/array, got {X!r}")
    if isinstance(X, int | np.integer):
        n = int(X)
        if n < 0:
            raise ValueError(f"number of samples must be >= 0, got {n}")
        return n
    if X is None:
        raise ValueError("split() needs the number of samples or the data/index to split")
    index = X if isinstance(X, pd.Index) else getattr(X, "index", None)
    if isinstance(index, pd.Index) and not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError(
            "the index must be strictly increasing (sorted in time, one row per bar): "
            "sort it and split one series at a time"
        )
    try:
        return len(X)
    except TypeError as exc:
        raise ValueError(f"cannot take the number of samples of {type(X).__name__}") from exc


def _blocks(sorted_idx: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs ``(first, last)`` of a sorted position array."""
    if sorted_idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_idx) != 1)
    starts = np.r_[sorted_idx[0], sorted_idx[breaks + 1]]
    ends = np.r_[sorted_idx[breaks], sorted_idx[-1]]
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def purged_train_indices(n: int, test: np.ndarray, *, horizon: int, embargo: int = 0) -> np.ndarray:
    """Training positions for a test set (any positions in ``0 .. n-1``): everything else, purged and embargoed.

    For every contiguous test block ``[a, b]`` the bars ``[a - horizon, b + horizon + embargo]`` are removed
    (clipped to ``0 .. n-1``): the block itself, the purge on both sides (training label windows
    ``[t, t + horizon]`` that meet the test labels' span ``[a, b + horizon]``) and the embargo after it.
    Returns a sorted ``int64`` array (possibly empty).
    """
    n = _n_samples(n)
    horizon = _as_count(horizon, "horizon", minimum=0)
    embargo = _as_count(embargo, "embargo", minimum=0)
    test = np.unique(np.asarray(test, dtype=np.int64))
    if test.size and (test[0] < 0 or test[-1] >= n):
        raise ValueError(f"test positions must lie in [0, {n - 1}]")
    keep = np.ones(n, dtype=bool)
    for a, b in _blocks(test):
        keep[max(0, a - horizon) : min(n, b + horizon + embargo + 1)] = False
    return np.flatnonzero(keep).astype(np.int64)


class _Splitter:
    horizon: int
    embargo: int

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[Split]:
        raise NotImplementedError

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def _params(self) -> dict[str, Any]:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------- WalkForward
class WalkForward(_Splitter):
    """Walk-forward splits: ``n_splits`` contiguous test windows in time order, each trained on the past only.

    Exact rules for ``n`` bars, ``K = n_splits``, ``h = horizon``, ``e = embargo``:

    * Test windows are the last ``K * T`` bars cut into ``K`` consecutive windows of ``T = test_size`` bars:
      window ``k`` (``k = 0 .. K-1``) is ``[n - (K - k) * T, n - (K - k - 1) * T)``. They are non-overlapping,
      increasing in time, and the last one ends at the last bar. Bars before the first window that are not
      needed are only ever training data.
    * Default ``T``: ``(n - h - e - train_size) // K`` when ``train_size`` is given, else
      ``(n - h - e) // (K + 1)`` (the first training window then holds at least ``T`` bars).
    * For a test window starting at ``a`` the training set ends at ``a - h - e`` (exclusive):

      - purge: the last ``h`` bars before the test, ``[a - h, a)``, are dropped, since their label windows
        ``[t, t + h]`` reach into the test window (every kept ``t`` has ``t + h < a``);
      - embargo: ``e`` more bars, ``[a - h - e, a - h)``, are dropped. Walk-forward training never lies after
        a test window, so the embargo takes the only form that matters here: a gap of ``e`` bars between
        the purged training window and the test window (like scikit-learn's ``TimeSeriesSplit(gap=...)``).

      Thus there are ``h + e`` unused bars between the last training bar and the first test bar.
    * ``mode='expanding'``: training is ``[0, a - h - e)``. ``train_size``, if given, is the minimum
      size of the first (smallest) training window.
    * ``mode='rolling'``: training is the ``W = train_size`` bars ``[a - h - e - W, a - h - e)``; the default
      ``W`` is the largest that fits the first fold, ``n - K * T - h - e``, so every fold trains on ``W`` bars.

    ``ValueError`` when ``T < 1`` or when the first training window would hold fewer than
    ``max(1, train_size)`` bars.
    """

    def __init__(
        self,
        n_splits: int = 5,
        *,
        mode: Literal["expanding", "rolling"] = "expanding",
        train_size: int | None = None,
        test_size: int | None = None,
        horizon: int = 0,
        embargo: int = 0,
    ) -> None:
        self.n_splits = _as_count(n_splits, "n_splits", minimum=1)
        if mode not in ("expanding", "rolling"):
            raise ValueError(f"mode must be 'expanding' or 'rolling', got {mode!r}")
        self.mode = mode
        self.train_size = None if train_size is None else _as_count(train_size, "train_size", minimum=1)
        self.test_size = None if test_size is None else _as_count(test_size, "test_size", minimum=1)
        self.horizon = _as_count(horizon, "horizon", minimum=0)
        self.embargo = _as_count(embargo, "embargo", minimum=0)

    def _params(self) -> dict[str, Any]:
        return {
            "n_splits": self.n_splits,
            "mode": self.mode,
            "train_size": self.train_size,
            "test_size": self.test_size,
            "horizon": self.horizon,
            "embargo": self.embargo,
        }

    def layout(self, n: Any) -> tuple[int, int]:
        """``(test_size, train_size)`` used for ``n`` bars (``train_size``: the rolling window, or the first
        expanding window); raises ``ValueError`` when ``n`` is too short."""
        n = _n_samples(n)
        k, gap = self.n_splits, self.horizon + self.embargo
        if self.test_size is not None:
            t = self.test_size
        elif self.train_size is not None:
            t = (n - gap - self.train_size) // k
        else:
            t = (n - gap) // (k + 1)
        if t < 1:
            need = gap + k + (self.train_size if self.train_size is not None else 1)
            raise ValueError(
                f"too few samples: {n} bars cannot hold {k} test windows of >= 1 bar after a training "
                f"window of {self.train_size or 'at least 1'} bar(s) and a purge+embargo gap of {gap} "
                f"(horizon={self.horizon}, embargo={self.embargo}); need at least {need} bars"
            )
        first_train = n - k * t - gap
        need_train = self.train_size if self.train_size is not None else 1
        if first_train < need_train:
            raise ValueError(
                f"too few samples: {n} bars leave {max(first_train, 0)} training bar(s) before the first of "
                f"{k} test windows of {t} bars (horizon={self.horizon}, embargo={self.embargo} purge/embargo "
                f"{gap} bars), need at least {need_train}; need n >= {k * t + gap + need_train}"
            )
        width = self.train_size if (self.mode == "rolling" and self.train_size is not None) else first_train
        return t, width

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[Split]:
        """Yield ``(train, test)`` position arrays, tests in increasing time order."""
        n = _n_samples(X)
        t, width = self.layout(n)
        gap = self.horizon + self.embargo
        for k in range(self.n_splits):
            a = n - (self.n_splits - k) * t
            stop = a - gap
            start = stop - width if self.mode == "rolling" else 0
            yield np.arange(start, stop, dtype=np.int64), np.arange(a, a + t, dtype=np.int64)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits


# --------------------------------------------------------------------------------------------- PurgedKFold
class PurgedKFold(_Splitter):
    """K-fold with purging and embargo (López de Prado, *Advances in Financial Machine Learning*, ch. 7).

    Exact rules for ``n`` bars, ``K = n_splits``, ``h = horizon``, ``e = embargo``:

    * The test folds are ``K`` contiguous blocks partitioning ``0 .. n-1`` in order, sizes as
      ``np.array_split`` (the first ``n % K`` folds hold one bar more). Each bar is tested exactly once.
    * For a test fold ``[a, b]`` the training set is every other bar except

      - purge, both sides: bars ``t`` whose label window ``[t, t + h]`` meets the test labels' span
        ``[a, b + h]``, i.e. ``[a - h, a)`` before the fold and ``(b, b + h]`` after it;
      - embargo: the ``e`` bars after that, ``(b + h, b + h + e]`` (AFML applies the embargo after the
        last test label ends). No training bar lies in ``(b, b + e]``.

      So the training set is ``[0, a - h) ∪ (b + h + e, n)``.

    ``ValueError`` when ``n < K`` or when a fold would be left without training samples.
    """

    def __init__(self, n_splits: int = 5, *, horizon: int, embargo: int = 0) -> None:
        self.n_splits = _as_count(n_splits, "n_splits", minimum=2)
        self.horizon = _as_count(horizon, "horizon", minimum=0)
        self.embargo = _as_count(embargo, "embargo", minimum=0)

    def _params(self) -> dict[str, Any]:
        return {"n_splits": self.n_splits, "horizon": self.horizon, "embargo": self.embargo}

    def folds(self, n: Any) -> list[np.ndarray]:
        """The ``K`` test folds (contiguous, partitioning ``0 .. n-1``)."""
        n = _n_samples(n)
        if n < self.n_splits:
            raise ValueError(f"too few samples: {n} bars cannot make {self.n_splits} folds of >= 1 bar")
        return [f.astype(np.int64) for f in np.array_split(np.arange(n), self.n_splits)]

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[Split]:
        """Yield ``(train, test)`` for each fold in time order. All folds are checked before the first yield."""
        n = _n_samples(X)
        out = []
        for i, test in enumerate(self.folds(n)):
            train = purged_train_indices(n, test, horizon=self.horizon, embargo=self.embargo)
            if train.size == 0:
                raise ValueError(
                    f"too few samples: fold {i} ({test.size} bars) has no training samples left after purging "
                    f"horizon={self.horizon} and embargo={self.embargo} bars around it (n={n}, "
                    f"n_splits={self.n_splits}); use more data, fewer folds or a shorter horizon/embargo"
                )
            out.append((train, test))
        yield from out

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits


# ------------------------------------------------------------------------------------ CombinatorialPurgedCV
class CombinatorialPurgedCV(_Splitter):
    """Combinatorial purged cross-validation (López de Prado, AFML ch. 12).

    Exact rules for ``n`` bars, ``N = n_groups``, ``k = n_test_groups``, ``h = horizon``, ``e = embargo``:

    * The bars are cut into ``N`` contiguous groups partitioning ``0 .. n-1`` (sizes as ``np.array_split``).
    * There is one split per combination of ``k`` test groups, ``C(N, k)`` splits, in the lexicographic order
      of ``itertools.combinations(range(N), k)`` (see :meth:`test_groups`). The test set is the union of
      those groups.
    * Training is every other bar minus, for every contiguous test block ``[a, b]`` (adjacent test groups
      form one block), the purge ``[a - h, a) ∪ (b, b + h]`` (label windows ``[t, t + h]`` meeting the
      test labels' span ``[a, b + h]``) and the embargo ``(b + h, b + h + e]``.
    * Each group is tested in ``C(N-1, k-1)`` splits, which yields ``φ = k/N · C(N, k) = C(N-1, k-1)``
      backtest paths: :meth:`paths` gives, for path ``j`` and group ``g``, the split whose test predictions
      for group ``g`` belong to path ``j`` (the ``j``-th split, in split order, that tests ``g``).

    ``ValueError`` for ``N < 2``, ``k`` outside ``1 .. N-1``, ``n < N``, or a split left without training
    samples.
    """

    def __init__(self, n_groups: int = 6, n_test_groups: int = 2, *, horizon: int, embargo: int = 0) -> None:
        self.n_groups = _as_count(n_groups, "n_groups", minimum=2)
        self.n_test_groups = _as_count(n_test_groups, "n_test_groups", minimum=1)
        if self.n_test_groups >= self.n_groups:
            raise ValueError(
                f"n_test_groups must be < n_groups (some group must remain for training), "
                f"got n_test_groups={self.n_test_groups}, n_groups={self.n_groups}"
            )
        self.horizon = _as_count(horizon, "horizon", minimum=0)
        self.embargo = _as_count(embargo, "embargo", minimum=0)

    def _params(self) -> dict[str, Any]:
        return {
            "n_groups": self.n_groups,
            "n_test_groups": self.n_test_groups,
            "horizon": self.horizon,
            "embargo": self.embargo,
        }

    @property
    def n_paths(self) -> int:
        """``φ = k/N · C(N, k) = C(N-1, k-1)``, the number of backtest paths."""
        return math.comb(self.n_groups - 1, self.n_test_groups - 1)

    def get_n_paths(self) -> int:
        return self.n_paths

    def test_groups(self) -> list[tuple[int, ...]]:
        """The test groups of each split, in split order."""
        return list(itertools.combinations(range(self.n_groups), self.n_test_groups))

    def groups(self, n: Any) -> list[np.ndarray]:
        """The ``N`` groups of positions (contiguous, partitioning ``0 .. n-1``)."""
        n = _n_samples(n)
        if n < self.n_groups:
            raise ValueError(f"too few samples: {n} bars cannot make {self.n_groups} groups of >= 1 bar")
        return [g.astype(np.int64) for g in np.array_split(np.arange(n), self.n_groups)]

    def paths(self) -> np.ndarray:
        """``(n_paths, n_groups)`` int64 array: ``paths()[j, g]`` is the split index whose test predictions on
        group ``g`` make up path ``j``. Every split appears in exactly ``k`` cells, once per test group."""
        seen = np.zeros(self.n_groups, dtype=np.int64)
        out = np.full((self.n_paths, self.n_groups), -1, dtype=np.int64)
        for s, combo in enumerate(self.test_groups()):
            for g in combo:
                out[seen[g], g] = s
                seen[g] += 1
        return out

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[Split]:
        """Yield ``(train, test)`` per combination of test groups. All splits are checked before the first
        yield."""
        n = _n_samples(X)
        grp = self.groups(n)
        out = []
        for combo in self.test_groups():
            test = np.concatenate([grp[g] for g in combo])
            train = purged_train_indices(n, test, horizon=self.horizon, embargo=self.embargo)
            if train.size == 0:
                raise ValueError(
                    f"too few samples: testing groups {combo} leaves no training samples after purging "
                    f"horizon={self.horizon} and embargo={self.embargo} bars around them (n={n}, "
                    f"n_groups={self.n_groups}); use more data, fewer groups or a shorter horizon/embargo"
                )
            out.append((train, test))
        yield from out

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return math.comb(self.n_groups, self.n_test_groups)
