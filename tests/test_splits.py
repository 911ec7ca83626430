"""Leak-free splitters: property tests over random sizes, horizons and embargoes against the rules stated in
the docstrings and a brute-force oracle, small hand-made examples with exact arrays, and the error messages."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from workbench.ml.splits import CombinatorialPurgedCV, PurgedKFold, WalkForward, purged_train_indices

PROPS = settings(max_examples=150, deadline=None)


def _collect(cv, n):
    """All splits, or None when the splitter refuses ``n`` (ValueError)."""
    try:
        return list(cv.split(n))
    except ValueError:
        return None


def _oracle_train(n: int, test: np.ndarray, horizon: int, embargo: int) -> np.ndarray:
    """Brute force: drop t when [t, t+h] meets some [s, s+h], s in test, or t lies in (b, b+h+e] after a test
    block end b; drop the test itself."""
    tested = set(test.tolist())
    ends = [s for s in tested if s + 1 not in tested]
    keep = []
    for t in range(n):
        if t in tested:
            continue
        if any(abs(t - s) <= horizon for s in tested):
            continue
        if any(b < t <= b + horizon + embargo for b in ends):
            continue
        keep.append(t)
    return np.array(keep, dtype=np.int64)


def _check_common(splits, n: int, horizon: int, embargo: int) -> None:
    """Properties (1)-(3) plus dtype/sortedness, for any splitter."""
    for train, test in splits:
        for a in (train, test):
            assert a.dtype == np.int64
            assert np.all(np.diff(a) > 0), "positions sorted and unique"
            assert a.size == 0 or (a[0] >= 0 and a[-1] < n)
        assert test.size > 0 and train.size > 0
        # (1) disjoint
        assert np.intersect1d(train, test).size == 0
        # (2) no training label window [t, t+h] meets any test bar
        dist = np.abs(train[:, None] - test[None, :])
        label_hits = (test[None, :] >= train[:, None]) & (test[None, :] <= train[:, None] + horizon)
        assert not label_hits.any()
        # ... nor any test label window [s, s+h] (the stronger, two-sided purge)
        assert dist.min() > horizon
        # (3) embargo: nothing in (b, b+e] after any test block end b
        ends = test[np.r_[np.diff(test) != 1, True]]
        for b in ends:
            assert not np.any((train > b) & (train <= b + embargo))


# ------------------------------------------------------------------------------------------ property tests
@PROPS
@given(
    n=st.integers(1, 200),
    k=st.integers(2, 8),
    horizon=st.integers(0, 15),
    embargo=st.integers(0, 15),
)
def test_purged_kfold_properties(n, k, horizon, embargo):
    cv = PurgedKFold(k, horizon=horizon, embargo=embargo)
    splits = _collect(cv, n)
    folds = np.array_split(np.arange(n), k) if n >= k else None
    valid = folds is not None and all(_oracle_train(n, f, horizon, embargo).size > 0 for f in folds)
    assert (splits is not None) == valid, "refuses exactly when a fold would have no training data"
    assume(valid)
    assert len(splits) == cv.get_n_splits() == k
    _check_common(splits, n, horizon, embargo)
    # (5) test folds are contiguous and partition the range, in order
    tests = [t for _, t in splits]
    assert all(np.all(np.diff(t) == 1) for t in tests)
    np.testing.assert_array_equal(np.concatenate(tests), np.arange(n))
    for (train, test), fold in zip(splits, folds, strict=True):
        np.testing.assert_array_equal(test, fold)
        np.testing.assert_array_equal(train, _oracle_train(n, test, horizon, embargo))
        a, b = test[0], test[-1]
        expected = np.r_[np.arange(0, max(0, a - horizon)), np.arange(b + horizon + embargo + 1, n)]
        np.testing.assert_array_equal(train, expected)


@PROPS
@given(
    n=st.integers(1, 120),
    n_groups=st.integers(2, 7),
    data=st.data(),
    horizon=st.integers(0, 8),
    embargo=st.integers(0, 8),
)
def test_cpcv_properties(n, n_groups, data, horizon, embargo):
    k = data.draw(st.integers(1, n_groups - 1), label="n_test_groups")
    cv = CombinatorialPurgedCV(n_groups, k, horizon=horizon, embargo=embargo)
    # (6) counts, independent of the data
    n_splits = math.comb(n_groups, k)
    assert cv.get_n_splits() == n_splits
    assert Fraction(cv.n_paths) == Fraction(k, n_groups) * n_splits == math.comb(n_groups - 1, k - 1)
    assert cv.get_n_paths() == cv.n_paths
    paths = cv.paths()
    assert paths.shape == (cv.n_paths, n_groups) and paths.dtype == np.int64
    combos = cv.test_groups()
    assert len(combos) == n_splits == len(set(combos))
    for g in range(n_groups):
        testing_g = [s for s, c in enumerate(combos) if g in c]
        assert len(testing_g) == math.comb(n_groups - 1, k - 1)
        np.testing.assert_array_equal(paths[:, g], testing_g)
    np.testing.assert_array_equal(np.bincount(paths.ravel(), minlength=n_splits), np.full(n_splits, k))

    splits = _collect(cv, n)
    groups = np.array_split(np.arange(n), n_groups) if n >= n_groups else None
    valid = groups is not None and all(
        _oracle_train(n, np.concatenate([groups[g] for g in c]), horizon, embargo).size > 0 for c in combos
    )
    assert (splits is not None) == valid
    assume(valid)
    assert len(splits) == n_splits
    _check_common(splits, n, horizon, embargo)
    times_tested = np.zeros(n, dtype=int)
    for (train, test), combo in zip(splits, combos, strict=True):
        np.testing.assert_array_equal(test, np.concatenate([groups[g] for g in combo]))
        np.testing.assert_array_equal(train, _oracle_train(n, test, horizon, embargo))
        times_tested[test] += 1
    assert np.all(times_tested == math.comb(n_groups - 1, k - 1))
    # every path tests each bar exactly once
    for row in paths:
        pieces = [np.intersect1d(splits[s][1], groups[g]) for g, s in enumerate(row)]
        np.testing.assert_array_equal(np.concatenate(pieces), np.arange(n))


@PROPS
@given(
    n=st.integers(1, 250),
    k=st.integers(1, 8),
    mode=st.sampled_from(["expanding", "rolling"]),
    train_size=st.none() | st.integers(1, 60),
    test_size=st.none() | st.integers(1, 30),
    horizon=st.integers(0, 15),
    embargo=st.integers(0, 15),
)
def test_walk_forward_properties(n, k, mode, train_size, test_size, horizon, embargo):
    cv = WalkForward(
        k, mode=mode, train_size=train_size, test_size=test_size, horizon=horizon, embargo=embargo
    )
    gap = horizon + embargo
    if test_size is not None:
        t = test_size
    elif train_size is not None:
        t = (n - gap - train_size) // k
    else:
        t = (n - gap) // (k + 1)
    valid = t >= 1 and n - k * t - gap >= (train_size or 1)
    splits = _collect(cv, n)
    assert (splits is not None) == valid
    assume(valid)
    assert len(splits) == cv.get_n_splits() == k
    _check_common(splits, n, horizon, embargo)
    tests = [te for _, te in splits]
    # (4) tests in increasing time order, non-overlapping, contiguous windows of t bars ending at the last bar
    assert all(te.size == t and np.all(np.diff(te) == 1) for te in tests)
    assert all(a[-1] < b[0] for a, b in itertools.pairwise(tests))
    assert tests[-1][-1] == n - 1
    for train, test in splits:
        assert train[-1] < test[0]  # every training index precedes every test index
        assert train[-1] + horizon < test[0]  # no label reaches the test window
        assert test[0] - train[-1] - 1 == gap  # exactly horizon + embargo unused bars in between
        assert np.all(np.diff(train) == 1)
    sizes = [tr.size for tr, _ in splits]
    if mode == "expanding":
        assert all(tr[0] == 0 for tr, _ in splits)
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
        if train_size is not None:
            assert sizes[0] >= train_size
    else:
        expected = train_size if train_size is not None else n - k * t - gap
        assert set(sizes) == {expected}


# ------------------------------------------------------------------------------------- hand-made examples
def _as_lists(splits):
    return [(tr.tolist(), te.tolist()) for tr, te in splits]


def test_purged_kfold_by_hand():
    # n=12, 3 folds of 4; horizon 1 purges 1 bar each side, embargo 1 more after the fold
    assert _as_lists(PurgedKFold(3, horizon=1, embargo=1).split(12)) == [
        ([6, 7, 8, 9, 10, 11], [0, 1, 2, 3]),
        ([0, 1, 2, 10, 11], [4, 5, 6, 7]),
        ([0, 1, 2, 3, 4, 5, 6], [8, 9, 10, 11]),
    ]
    # uneven folds (sizes 4, 3, 3), no purge at all: plain K-fold
    assert _as_lists(PurgedKFold(3, horizon=0).split(10)) == [
        ([4, 5, 6, 7, 8, 9], [0, 1, 2, 3]),
        ([0, 1, 2, 3, 7, 8, 9], [4, 5, 6]),
        ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9]),
    ]
    # embargo without horizon: only after the fold
    assert _as_lists(PurgedKFold(2, horizon=0, embargo=2).split(8)) == [
        ([6, 7], [0, 1, 2, 3]),
        ([0, 1, 2, 3], [4, 5, 6, 7]),
    ]


def test_walk_forward_by_hand():
    # n=20, K=3, h=2, e=1: T = (20 - 3) // 4 = 4, tests [8,12), [12,16), [16,20); train ends 3 bars before
    assert _as_lists(WalkForward(3, horizon=2, embargo=1).split(20)) == [
        ([0, 1, 2, 3, 4], [8, 9, 10, 11]),
        (list(range(9)), [12, 13, 14, 15]),
        (list(range(13)), [16, 17, 18, 19]),
    ]
    assert _as_lists(WalkForward(3, mode="rolling", horizon=2, embargo=1).split(20)) == [
        ([0, 1, 2, 3, 4], [8, 9, 10, 11]),
        ([4, 5, 6, 7, 8], [12, 13, 14, 15]),
        ([8, 9, 10, 11, 12], [16, 17, 18, 19]),
    ]
    # explicit sizes: rolling window of 3, tests of 2, horizon 1; bars 0..2 never used
    assert _as_lists(WalkForward(2, mode="rolling", train_size=3, test_size=2, horizon=1).split(10)) == [
        ([2, 3, 4], [6, 7]),
        ([4, 5, 6], [8, 9]),
    ]
    # train_size in expanding mode sets the first window, and T = (10 - 0 - 4) // 2 = 3
    assert _as_lists(WalkForward(2, train_size=4).split(10)) == [
        ([0, 1, 2, 3], [4, 5, 6]),
        ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9]),
    ]


def test_cpcv_by_hand():
    cv = CombinatorialPurgedCV(4, 2, horizon=1)
    assert cv.test_groups() == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    # groups [0,1], [2,3], [4,5], [6,7]
    assert _as_lists(cv.split(8)) == [
        ([5, 6, 7], [0, 1, 2, 3]),
        ([7], [0, 1, 4, 5]),
        ([3, 4], [0, 1, 6, 7]),
        ([0, 7], [2, 3, 4, 5]),
        ([0], [2, 3, 6, 7]),
        ([0, 1, 2], [4, 5, 6, 7]),
    ]
    assert cv.n_paths == 3
    np.testing.assert_array_equal(cv.paths(), [[0, 0, 1, 2], [1, 3, 3, 4], [2, 4, 5, 5]])
    # AFML's example: N=6, k=2 -> 15 splits, 5 paths
    big = CombinatorialPurgedCV(6, 2, horizon=0)
    assert (big.get_n_splits(), big.n_paths) == (15, 5)
    # k=1 is plain purged K-fold, one path
    one = CombinatorialPurgedCV(3, 1, horizon=1, embargo=1)
    assert _as_lists(one.split(12)) == _as_lists(PurgedKFold(3, horizon=1, embargo=1).split(12))
    np.testing.assert_array_equal(one.paths(), [[0, 1, 2]])


def test_purged_train_indices_by_hand():
    # two test blocks [3,4] and [9]; h=1 e=2: drop [2, 7] and [8, 12]
    np.testing.assert_array_equal(
        purged_train_indices(14, np.array([9, 3, 4]), horizon=1, embargo=2), [0, 1, 13]
    )
    assert purged_train_indices(5, np.array([], dtype=np.int64), horizon=3).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"test positions must lie in \[0, 4\]"):
        purged_train_indices(5, np.array([5]), horizon=0)


def test_inputs_other_than_n():
    idx = pd.date_range("2024-01-01", periods=12, freq="h", tz="UTC")
    frame = pd.DataFrame({"x": np.arange(12.0)}, index=idx)
    expected = _as_lists(PurgedKFold(3, horizon=1).split(12))
    for x in (idx, frame, frame["x"], np.zeros((12, 3)), list(range(12)), np.int64(12)):
        assert _as_lists(PurgedKFold(3, horizon=1).split(x)) == expected
    # scikit-learn signature: split(X, y, groups), get_n_splits(X, y, groups)
    cv = WalkForward(2, horizon=1)
    assert len(list(cv.split(frame, frame["x"], None))) == cv.get_n_splits(frame, frame["x"], None) == 2
    with pytest.raises(ValueError, match="strictly increasing"):
        list(PurgedKFold(3, horizon=1).split(frame.iloc[::-1]))
    with pytest.raises(ValueError, match="strictly increasing"):
        list(PurgedKFold(3, horizon=1).split(idx.append(idx[-1:])))


def test_repr():
    assert repr(PurgedKFold(4, horizon=3, embargo=1)) == "PurgedKFold(n_splits=4, horizon=3, embargo=1)"
    assert "mode='rolling'" in repr(WalkForward(2, mode="rolling"))
    assert repr(CombinatorialPurgedCV(5, 2, horizon=1)).startswith("CombinatorialPurgedCV(n_groups=5")


# ----------------------------------------------------------------------------------------- error messages
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: PurgedKFold(1, horizon=0), r"n_splits must be >= 2, got 1"),
        (lambda: PurgedKFold(3, horizon=-1), r"horizon must be >= 0, got -1"),
        (lambda: PurgedKFold(3, horizon=1.5), r"horizon must be an integer number of bars"),
        (lambda: PurgedKFold(3, horizon=True), r"horizon must be an integer"),
        (lambda: PurgedKFold(3, horizon=2, embargo=-2), r"embargo must be >= 0, got -2"),
        (lambda: WalkForward(0), r"n_splits must be >= 1, got 0"),
        (lambda: WalkForward(3, mode="sliding"), r"mode must be 'expanding' or 'rolling', got 'sliding'"),
        (lambda: WalkForward(3, train_size=0), r"train_size must be >= 1, got 0"),
        (lambda: WalkForward(3, test_size="5"), r"test_size must be an integer"),
        (lambda: CombinatorialPurgedCV(1, 1, horizon=0), r"n_groups must be >= 2, got 1"),
        (lambda: CombinatorialPurgedCV(4, 0, horizon=0), r"n_test_groups must be >= 1, got 0"),
        (lambda: CombinatorialPurgedCV(4, 4, horizon=0), r"n_test_groups must be < n_groups"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_too_few_samples():
    with pytest.raises(ValueError, match=r"too few samples: 4 bars cannot make 5 folds"):
        list(PurgedKFold(5, horizon=0).split(4))
    with pytest.raises(ValueError, match=r"too few samples: fold 0 .* no training samples left"):
        list(PurgedKFold(2, horizon=5).split(10))  # fold [0,4] purges through 9
    with pytest.raises(ValueError, match=r"too few samples: 3 bars cannot make 4 groups"):
        list(CombinatorialPurgedCV(4, 2, horizon=0).split(3))
    with pytest.raises(ValueError, match=r"too few samples: testing groups \(0, 1\) leaves no training"):
        list(CombinatorialPurgedCV(4, 2, horizon=4).split(8))
    with pytest.raises(
        ValueError, match=r"too few samples: 5 bars cannot hold 3 test windows.*need at least 6"
    ):
        list(WalkForward(3, horizon=1, embargo=1).split(5))
    assert len(list(WalkForward(3, horizon=1, embargo=1).split(6))) == 3
    with pytest.raises(ValueError, match=r"leave 2 training bar\(s\).*need at least 5; need n >= 14"):
        list(WalkForward(3, train_size=5, test_size=3).split(11))
    with pytest.raises(ValueError, match=r"number of samples must be >= 0"):
        list(PurgedKFold(2, horizon=0).split(-3))
    with pytest.raises(ValueError, match=r"split\(\) needs the number of samples"):
        list(PurgedKFold(2, horizon=0).split(None))
