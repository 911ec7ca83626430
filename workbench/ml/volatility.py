"""Realized-volatility forecasting, scored out of sample.

Target: the realized variance of the next ``horizon`` bars, ``RV_t = sum_{i=1..h} r_{t+i}^2`` with
``r_t = log(close_t / close_{t-1})`` (:func:`realized_variance`; forward-looking by design, NaN for the
last ``horizon`` bars). Features (:func:`vol_features`) use only data up to the close of bar ``t``.

Models (one interface: ``name``, ``horizon``, ``fit(candles_train) -> self``,
``predict(candles) -> pd.Series`` of forecast variance for the next ``horizon`` bars, aligned to the bars
of ``candles``, NaN where unknown). Every forecast at bar ``t`` uses data up to the close of ``t`` only:

* :class:`ConstantVol` - the training-window mean variance (the floor any model must beat);
* :class:`HistoricalVol` - trailing realized variance, scaled to the horizon;
* :class:`GARCHVol` - GARCH(1,1) from the ``arch`` package, fitted once on the training window and then
  filtered forward through later bars with the parameters held fixed (no refit on test data);
* :class:`HARVol` - HAR-RV regression (OLS) on trailing realized variance over 1 bar / 1 day / 1 week;
* :class:`MLPVol`, :class:`GRUVol` - small torch networks trained by :class:`workbench.ml.trainer.Trainer`
  with the QLIKE loss.

:func:`evaluate_vol_models` fits each model on the training window, purges ``horizon`` bars and scores
the forecasts on the rest with :func:`qlike` and :func:`rmse` (of volatility, the square root of the
variance).

>>> table = evaluate_vol_models(candles, horizon=24, train_end=0.7)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from torch import nn

from workbench.ml.trainer import TrainConfig, Trainer, set_seed

__all__ = [
    "ConstantVol",
    "GARCHVol",
    "GRUVol",
    "HARVol",
    "HistoricalVol",
    "MLPVol",
    "VolModel",
    "default_vol_models",
    "default_windows",
    "evaluate_vol_models",
    "log_returns",
    "qlike",
    "realized_variance",
    "register_vol_model",
    "rmse",
    "split_train_test",
    "vol_features",
    "vol_forecasts",
]

_FOUR_LN2 = 4.0 * math.log(2.0)
QLIKE_FLOOR = 1e-12
"""Realized variances are clamped at this value in :func:`qlike`, as the trainer's 'qlike' loss does."""


# ----------------------------------------------------------------------------------------------- target


def log_returns(candles: pd.DataFrame) -> pd.Series:
    """``r_t = log(close_t / close_{t-1})`` row by row (NaN at the first bar). Gaps are not filled: a
    missing bar makes the next return span two bars (fill or drop gaps first, see ``workbench.features``)."""
    close = candles["close"].to_numpy(dtype="float64")
    r = np.full(len(close), np.nan)
    if len(close) > 1:
        r[1:] = np.diff(np.log(close))
    return pd.Series(r, index=candles.index, name="ret")


def realized_variance(candles: pd.DataFrame, horizon: int) -> pd.Series:
    """Forward realized variance ``RV_t = sum_{i=1..horizon} r_{t+i}^2`` (NaN for the last ``horizon``
    bars, where the window runs past the data). Forward-looking by design: a target, never a feature."""
    h = _check_horizon(horizon)
    r2 = log_returns(candles).to_numpy() ** 2
    n = len(r2)
    out = np.full(n, np.nan)
    if n > h:
        c = np.concatenate([[0.0], np.cumsum(r2[1:])])  # c[k] = sum of r2[1..k]
        t = np.arange(n - h)
        out[: n - h] = c[t + h] - c[t]
    return pd.Series(out, index=candles.index, name=f"rv_fwd_{h}")


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer number of bars, got {horizon!r}")
    return int(horizon)


# --------------------------------------------------------------------------------------------- features


def default_windows(candles: pd.DataFrame) -> tuple[int, int, int]:
    """HAR windows in bars for the candles' bar length: (1 bar, 1 day, 1 week), e.g. (1, 24, 168) for 1h
    and (1, 288, 2016) for 5m; for bars of a day or longer (1, 7, 30) bars."""
    idx = candles.index
    if not isinstance(idx, pd.DatetimeIndex) or len(idx) < 2:
        return (1, 24, 168)
    step = pd.Series(idx).diff().median().total_seconds()
    day = round(86_400 / step) if step > 0 else 24
    if day >= 2:
        return (1, day, 7 * day)
    return (1, 7, 30)


def vol_features(candles: pd.DataFrame, windows: Sequence[int] | None = None) -> pd.DataFrame:
    """Volatility features known at the close of each bar (row ``t`` uses bars ``<= t`` only).

    Columns, for each window ``w`` of ``windows`` (default :func:`default_windows`, HAR-style):

    * ``rv_{w}`` - mean squared log return over the last ``w`` bars (per-bar variance);
    * ``pk_{w}`` - mean Parkinson high-low variance ``log(high/low)^2 / (4 log 2)`` over the last ``w`` bars;

    and ``abs_ret`` (``|r_t|``), ``ret`` (signed ``r_t``: the leverage effect), ``ret_{W}`` (the log return
    over the middle window ``W``), ``vlm_chg`` (``log1p(volume_t) - log1p(volume_{t-1})``) and ``vlm_rel``
    (``log1p(volume_t)`` minus its mean over the longest window). Windows are full (``min_periods = w``),
    so the first rows are NaN.
    """
    wins = tuple(int(w) for w in (windows if windows is not None else default_windows(candles)))
    if not wins or any(w < 1 for w in wins):
        raise ValueError(f"windows must be positive bar counts, got {windows!r}")
    r = log_returns(candles)
    r2 = r**2
    hl = np.log(candles["high"] / candles["low"]) ** 2 / _FOUR_LN2
    out: dict[str, pd.Series] = {}
    for w in wins:
        out[f"rv_{w}"] = r2.rolling(w, min_periods=w).mean()
    for w in wins:
        out[f"pk_{w}"] = hl.rolling(w, min_periods=w).mean()
    out["abs_ret"] = r.abs()
    out["ret"] = r
    mid = sorted(wins)[len(wins) // 2]
    logc = np.log(candles["close"])
    out[f"ret_{mid}"] = logc - logc.shift(mid)
    lv = np.log1p(candles["volume"])
    out["vlm_chg"] = lv.diff()
    longest = max(wins)
    out["vlm_rel"] = lv - lv.rolling(longest, min_periods=longest).mean()
    return pd.DataFrame(out, index=candles.index)


# ---------------------------------------------------------------------------------------------- metrics


def _pair(forecast_var: Any, realized_var: Any) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(forecast_var, dtype="float64").ravel()
    rv = np.asarray(realized_var, dtype="float64").ravel()
    if f.shape != rv.shape:
        raise ValueError(f"forecast has {f.size} values but realized has {rv.size}")
    ok = np.isfinite(f) & np.isfinite(rv)
    f, rv = f[ok], rv[ok]
    if np.any(f <= 0):
        raise ValueError("variance forecasts must be > 0")
    if np.any(rv < 0):
        raise ValueError("realized variances must be >= 0")
    return f, rv


def qlike(forecast_var: Any, realized_var: Any) -> float:
    """QLIKE loss ``mean(rv / f - log(rv / f) - 1)`` over pairs where both are finite (0 for a perfect
    forecast; robust to noise in the RV proxy, Patton 2011). ``rv`` is clamped at :data:`QLIKE_FLOOR` as
    in the trainer's loss; forecasts must be > 0. NaN when no pair is left."""
    f, rv = _pair(forecast_var, realized_var)
    if f.size == 0:
        return float("nan")
    ratio = np.maximum(rv, QLIKE_FLOOR) / f
    return float(np.mean(ratio - np.log(ratio) - 1.0))


def rmse(forecast_var: Any, realized_var: Any) -> float:
    """RMSE of volatility: ``sqrt(mean((sqrt(f) - sqrt(rv))^2))`` over pairs where both are finite."""
    f, rv = _pair(forecast_var, realized_var)
    if f.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((np.sqrt(f) - np.sqrt(rv)) ** 2)))


# ----------------------------------------------------------------------------------------------- models


@runtime_checkable
class VolModel(Protocol):
    """What the registry and :func:`evaluate_vol_models` expect of a volatility model."""

    name: str
    horizon: int

    def fit(self, candles: pd.DataFrame) -> VolModel: ...

    def predict(self, candles: pd.DataFrame) -> pd.Series: ...


class _Base:
    name = "base"

    def __init__(self, horizon: int) -> None:
        self.horizon = _check_horizon(horizon)
        self.fitted = False

    def _series(self, values: np.ndarray, candles: pd.DataFrame) -> pd.Series:
        return pd.Series(np.asarray(values, dtype="float64"), index=candles.index, name=self.name)

    def _need_fit(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__}: call fit() before predict()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, horizon={self.horizon})"


class ConstantVol(_Base):
    """The training window's mean per-bar squared return times ``horizon``: the same number at every bar."""

    name = "constant"

    def fit(self, candles: pd.DataFrame) -> ConstantVol:
        r2 = log_returns(candles).to_numpy() ** 2
        if np.isfinite(r2).sum() < 2:
            raise ValueError("ConstantVol needs at least 3 bars")
        self.var_per_bar_ = float(np.nanmean(r2))
        self.fitted = True
        return self

    def predict(self, candles: pd.DataFrame) -> pd.Series:
        self._need_fit()
        return self._series(np.full(len(candles), self.horizon * self.var_per_bar_), candles)


class HistoricalVol(_Base):
    """Historical volatility: the mean squared return over the last ``window`` bars scaled to the horizon,
    ``horizon / window * sum_{i=0..window-1} r_{t-i}^2`` (``window`` defaults to ``horizon``: the trailing
    realized variance over the same horizon). Nothing to fit."""

    name = "hist_vol"

    def __init__(self, horizon: int, window: int | None = None) -> None:
        super().__init__(horizon)
        self.window = _check_horizon(window if window is not None else horizon)

    def fit(self, candles: pd.DataFrame) -> HistoricalVol:
        self.fitted = True
        return self

    def predict(self, candles: pd.DataFrame) -> pd.Series:
        r2 = log_returns(candles) ** 2
        v = r2.rolling(self.window, min_periods=self.window).mean() * self.horizon
        return self._series(v.to_numpy(), candles)


class GARCHVol(_Base):
    """GARCH(1,1) variance forecasts from the ``arch`` package.

    ``fit`` estimates the parameters on the training candles only (returns are multiplied by ``scale`` =
    100, i.e. percent, because the optimiser is unstable on variances of order 1e-5; forecasts are divided
    by ``scale**2`` on the way out). ``predict`` builds the same model on the returns of the candles it is
    given, fixes the trained parameters (``arch_model(...).fix(params)``: nothing is re-estimated) and
    filters forward: ``forecast(horizon, start=1, reindex=False)`` gives at each bar ``t`` the expected
    variances of bars ``t+1..t+horizon`` from returns up to ``t``; their sum is the forecast of
    ``RV_t``. With ``mean='Zero'`` (the default) that sum is exactly ``E[sum r^2]``, which is what RV
    measures; with ``mean='Constant'`` ``horizon * mu^2`` is added.

    Leakage: the parameters never see data after the training window. The filter's start value (arch's
    backcast) is a weighted mean of the first 75 returns of the series passed to ``predict`` (the start of
    the training window when that series starts where training did); arch also computes loose variance
    bounds (1e-6..1e6 times an EWMA of past squared returns, and the full-series variance / 1e8) that never
    bind for a fitted GARCH, so each forecast depends on returns up to its bar only (tested).
    """

    name = "garch"

    def __init__(
        self,
        horizon: int,
        *,
        p: int = 1,
        q: int = 1,
        mean: str = "Zero",
        dist: str = "normal",
        scale: float = 100.0,
    ) -> None:
        super().__init__(horizon)
        self.p, self.q, self.mean, self.dist, self.scale = p, q, mean, dist, float(scale)

    def _model(self, candles: pd.DataFrame):
        from arch import arch_model  # optional dependency: imported only when a GARCH model is used

        r = log_returns(candles).iloc[1:] * self.scale
        if len(r) < 2 or not np.all(np.isfinite(r.to_numpy())):
            raise ValueError("GARCHVol needs at least 3 bars of finite prices")
        return arch_model(r, mean=self.mean, vol="GARCH", p=self.p, q=self.q, dist=self.dist, rescale=False)

    def fit(self, candles: pd.DataFrame) -> GARCHVol:
        if len(candles) < 100:
            raise ValueError(f"GARCHVol: {len(candles)} training bars are too few (at least 100)")
        res = self._model(candles).fit(disp="off", show_warning=False)
        self.params_ = res.params.copy()
        self.result_ = res
        self.fitted = True
        return self

    def predict(self, candles: pd.DataFrame) -> pd.Series:
        self._need_fit()
        out = np.full(len(candles), np.nan)
        if len(candles) < 3:
            return self._series(out, candles)
        fixed = self._model(candles).fix(self.params_.to_numpy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fc = fixed.forecast(horizon=self.horizon, start=0, reindex=False)
        var = fc.variance.to_numpy().sum(axis=1)
        if self.mean != "Zero":
            var = var + self.horizon * fc.mean.to_numpy()[:, 0] ** 2
        # forecast rows are labelled by the return's bar: row t forecasts t+1..t+h from returns up to t
        pos = candles.index.get_indexer(fc.variance.index)
        out[pos] = var / self.scale**2
        return self._series(out, candles)

    @property
    def persistence(self) -> float:
        """alpha + beta of the fitted model."""
        self._need_fit()
        p = self.params_
        return float(sum(v for k, v in p.items() if k.startswith(("alpha", "beta"))))


class HARVol(_Base):
    """HAR-RV (Corsi 2009): OLS of the forward realized variance on the trailing per-bar realized variance
    over ``windows`` (1 bar, 1 day, 1 week by default), fitted on the training window.

    ``log=False`` regresses levels (classic HAR-RV; forecasts are floored at the smallest positive
    training target, since OLS may go negative); ``log=True`` regresses ``log RV`` on ``log rv_w`` and
    maps back with Duan's smearing factor ``mean(exp(residuals))`` (``exp(E[log RV])`` alone would be biased
    low).
    """

    def __init__(self, horizon: int, windows: Sequence[int] | None = None, *, log: bool = False) -> None:
        super().__init__(horizon)
        self.windows = tuple(windows) if windows is not None else None
        self.log = log
        self.name = "har_log" if log else "har"

    def _X(self, candles: pd.DataFrame) -> np.ndarray:
        f = vol_features(candles, self.windows_)
        X = f[[f"rv_{w}" for w in self.windows_]].to_numpy()
        if self.log:
            X = np.log(np.maximum(X, self.x_floor_))
        return np.column_stack([np.ones(len(X)), X])

    def fit(self, candles: pd.DataFrame) -> HARVol:
        self.windows_ = self.windows or default_windows(candles)
        self.x_floor_ = 1e-12
        if self.log:
            rv1 = (log_returns(candles) ** 2).to_numpy()
            pos = rv1[np.isfinite(rv1) & (rv1 > 0)]
            self.x_floor_ = float(np.quantile(pos, 0.01)) if pos.size else 1e-12
        X = self._X(candles)
        y = realized_variance(candles, self.horizon).to_numpy()
        ok = np.isfinite(X).all(axis=1) & np.isfinite(y) & (y > 0)
        if ok.sum() < X.shape[1] + 10:
            raise ValueError(
                f"HARVol: only {int(ok.sum())} complete training rows (need the longest window "
                f"{max(self.windows_)} + horizon {self.horizon} + a few bars)"
            )
        yy = np.log(y[ok]) if self.log else y[ok]
        self.coef_, *_ = np.linalg.lstsq(X[ok], yy, rcond=None)
        self.floor_ = float(y[ok].min())
        if self.log:
            self.smear_ = float(np.mean(np.exp(yy - X[ok] @ self.coef_)))
        self.fitted = True
        return self

    def predict(self, candles: pd.DataFrame) -> pd.Series:
        self._need_fit()
        z = self._X(candles) @ self.coef_
        v = np.exp(z) * self.smear_ if self.log else np.maximum(z, self.floor_)
        return self._series(v, candles)


# ----------------------------------------------------------------------------------------------- neural


class _PositiveVariance(nn.Module):
    """Wraps a body that outputs a log variance (in units of the training mean RV) and returns
    ``exp(z)``, clamped to keep the QLIKE gradient finite."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(torch.clamp(self.body(x), -15.0, 15.0))


class _MLPBody(nn.Module):
    def __init__(self, n_in: int, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        k = n_in
        for h in hidden:
            layers += [nn.Linear(k, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            k = h
        last = nn.Linear(k, 1)
        nn.init.zeros_(last.bias)  # exp(0) = the training mean RV at the start
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _GRUBody(nn.Module):
    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        return self.head(h[-1])


class _NeuralVol(_Base):
    """Shared by :class:`MLPVol` and :class:`GRUVol`.

    Inputs: :func:`vol_features`, with the variance-like columns (``rv_*``, ``pk_*``, ``abs_ret``) taken as
    logs (floored at 1% of their positive training median), each column standardised with the training
    window's mean and standard deviation and clipped to +-8. Output: ``exp(z)`` times the training mean RV.

    Loss: QLIKE on the variance (the trainer's ``'qlike'``), chosen over MSE on log RV because QLIKE is the
    evaluation metric and is robust to the noise of RV as a proxy for the true variance, whereas MSE on
    log RV estimates ``E[log RV]``, a forecast biased low for the variance (Jensen) that needs a correction.
    The last ``valid_frac`` of the training samples (after a purge of ``horizon`` bars so that no training
    target overlaps them) is the validation set for early stopping. ``n_seeds`` > 1 trains that many
    networks (seeds ``config.seed + i``) and averages their variance forecasts: one small network's
    out-of-sample score swings with its seed.
    """

    seq_len = 1

    default_config = TrainConfig(epochs=60, batch_size=256, lr=3e-3, weight_decay=1e-4, patience=8, seed=7)

    def __init__(
        self,
        horizon: int,
        windows: Sequence[int] | None = None,
        *,
        config: TrainConfig | None = None,
        valid_frac: float = 0.2,
        n_seeds: int = 1,
    ) -> None:
        super().__init__(horizon)
        self.windows = tuple(windows) if windows is not None else None
        self.config = config or self.default_config
        if not 0.0 < valid_frac < 0.9:
            raise ValueError("valid_frac must be in (0, 0.9)")
        self.valid_frac = valid_frac
        self.n_seeds = _check_horizon(n_seeds)

    def _body(self, n_in: int) -> nn.Module:
        raise NotImplementedError

    def _design(self, candles: pd.DataFrame, standardise: bool = True) -> np.ndarray:
        f = vol_features(candles, self.windows_)[self.columns_]
        X = f.to_numpy(dtype="float64").copy()
        for j in self.log_cols_:
            X[:, j] = np.log(np.maximum(X[:, j], self.floors_[j]))
        if not standardise:
            return X
        return np.clip((X - self.mu_) / self.sd_, -8.0, 8.0)

    def _inputs(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs per bar and a mask of the bars whose inputs are complete."""
        ok = np.isfinite(X).all(axis=1)
        if self.seq_len == 1:
            return X, ok
        k, n, F = self.seq_len, len(X), X.shape[1]
        seq = np.zeros((n, k, F))
        okseq = np.zeros(n, dtype=bool)
        if n >= k:
            win = np.lib.stride_tricks.sliding_window_view(X, (k, F))[:, 0]  # (n-k+1, k, F)
            seq[k - 1 :] = win
            okwin = np.lib.stride_tricks.sliding_window_view(ok, k).all(axis=1)
            okseq[k - 1 :] = okwin
        seq[~okseq] = 0.0
        return seq, okseq

    def fit(self, candles: pd.DataFrame) -> _NeuralVol:
        self.windows_ = self.windows or default_windows(candles)
        raw = vol_features(candles, self.windows_)
        self.columns_ = list(raw.columns)
        self.log_cols_ = [j for j, c in enumerate(self.columns_) if c.startswith(("rv_", "pk_", "abs_ret"))]
        R = raw.to_numpy(dtype="float64")
        self.floors_ = np.zeros(R.shape[1])
        for j in self.log_cols_:
            col = R[:, j]
            pos = col[np.isfinite(col) & (col > 0)]
            self.floors_[j] = 0.01 * float(np.median(pos)) if pos.size else 1e-12
        T = self._design(candles, standardise=False)
        self.mu_ = np.nanmean(T, axis=0)
        sd = np.nanstd(T, axis=0)
        self.sd_ = np.where(np.isfinite(sd) & (sd > 1e-12), sd, 1.0)
        Xin, ok = self._inputs(self._design(candles))
        y = realized_variance(candles, self.horizon).to_numpy()
        ok &= np.isfinite(y)
        self.y_scale_ = float(np.mean(y[ok])) if ok.any() else float("nan")
        idx = np.flatnonzero(ok)
        n_val = int(len(idx) * self.valid_frac)
        n_tr = len(idx) - n_val - self.horizon
        if n_val < 20 or n_tr < 50 or not self.y_scale_ > 0:
            raise ValueError(f"{type(self).__name__}: {len(idx)} complete training samples are too few")
        tr, va = idx[:n_tr], idx[len(idx) - n_val :]
        ys = y / self.y_scale_
        self.trainers_: list[Trainer] = []
        for i in range(self.n_seeds):
            cfg = TrainConfig(**{**self.config.to_dict(), "seed": self.config.seed + i})
            set_seed(cfg.seed)  # the initial weights too, not only the batches: repeatable fits
            trainer = Trainer(_PositiveVariance(self._body(len(self.columns_))), loss="qlike", config=cfg)
            trainer.fit((Xin[tr], ys[tr]), (Xin[va], ys[va]))
            self.trainers_.append(trainer)
        self.history_ = self.trainers_[0].history
        self.fitted = True
        return self

    def predict(self, candles: pd.DataFrame) -> pd.Series:
        self._need_fit()
        Xin, ok = self._inputs(self._design(candles))
        out = np.full(len(candles), np.nan)
        if ok.any():
            preds = [t.predict(Xin[ok]).astype("float64") for t in self.trainers_]
            out[ok] = np.mean(preds, axis=0) * self.y_scale_
        return self._series(out, candles)


class MLPVol(_NeuralVol):
    """A small MLP on the features of bar ``t`` (see :class:`_NeuralVol` for inputs, output and loss)."""

    name = "mlp"

    def __init__(
        self,
        horizon: int,
        windows: Sequence[int] | None = None,
        *,
        hidden: Sequence[int] = (32, 16),
        dropout: float = 0.1,
        config: TrainConfig | None = None,
        valid_frac: float = 0.2,
        n_seeds: int = 5,
    ) -> None:
        super().__init__(horizon, windows, config=config, valid_frac=valid_frac, n_seeds=n_seeds)
        self.hidden, self.dropout = tuple(hidden), float(dropout)

    def _body(self, n_in: int) -> nn.Module:
        return _MLPBody(n_in, self.hidden, self.dropout)


class GRUVol(_NeuralVol):
    """A one-layer GRU over the feature vectors of the last ``seq_len`` bars (``t-seq_len+1..t``)."""

    name = "gru"

    default_config = TrainConfig(epochs=60, batch_size=256, lr=1e-3, weight_decay=1e-3, patience=8, seed=7)

    def __init__(
        self,
        horizon: int,
        windows: Sequence[int] | None = None,
        *,
        seq_len: int = 24,
        hidden: int = 8,
        config: TrainConfig | None = None,
        valid_frac: float = 0.2,
        n_seeds: int = 1,
    ) -> None:
        super().__init__(horizon, windows, config=config, valid_frac=valid_frac, n_seeds=n_seeds)
        self.seq_len, self.hidden = _check_horizon(seq_len), int(hidden)

    def _body(self, n_in: int) -> nn.Module:
        return _GRUBody(n_in, self.hidden)


# ------------------------------------------------------------------------------------------- evaluation


def default_vol_models(horizon: int, *, gru: bool = False) -> list[VolModel]:
    """Constant, historical vol, GARCH(1,1), HAR-RV (levels and logs) and the MLP (and the GRU)."""
    models: list[VolModel] = [
        ConstantVol(horizon),
        HistoricalVol(horizon),
        GARCHVol(horizon),
        HARVol(horizon),
        HARVol(horizon, log=True),
        MLPVol(horizon),
    ]
    if gru:
        models.append(GRUVol(horizon))
    return models


def _train_end_pos(candles: pd.DataFrame, train_end: Any) -> int:
    n = len(candles)
    if isinstance(train_end, bool):
        raise ValueError(f"invalid train_end {train_end!r}")
    if isinstance(train_end, float):
        if not 0.0 < train_end < 1.0:
            raise ValueError(f"a fractional train_end must lie in (0, 1), got {train_end!r}")
        return round(n * train_end)
    if isinstance(train_end, int | np.integer):
        return int(train_end)
    ts = pd.Timestamp(train_end)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(candles.index.searchsorted(ts, side="left"))


def split_train_test(
    candles: pd.DataFrame, horizon: int, train_end: Any, purge: int | None = None
) -> tuple[pd.DataFrame, int]:
    """The training candles (bars before ``train_end``) and the position of the first test bar.

    ``train_end``: a bar position (int), a fraction of the bars (float in (0, 1)) or a time (bars before
    it train). Training targets are computed from the training candles alone, so they end at the last
    training bar; the first ``purge`` bars after it (default ``horizon``) are dropped as well, so that no
    test forecast window touches a training target's bars even if a model used the training window's
    trailing returns as targets.
    """
    h = _check_horizon(horizon)
    purge = h if purge is None else int(purge)
    if purge < 0:
        raise ValueError("purge must be >= 0")
    end = _train_end_pos(candles, train_end)
    start = end + purge
    if end < 2 or start >= len(candles) - h:
        raise ValueError(
            f"train_end {train_end!r} leaves no training or no scorable test bars "
            f"({len(candles)} bars, horizon {h}, purge {purge})"
        )
    return candles.iloc[:end], start


def vol_forecasts(
    candles: pd.DataFrame,
    horizon: int,
    train_end: Any,
    models: Sequence[VolModel] | None = None,
    purge: int | None = None,
) -> pd.DataFrame:
    """Out-of-sample forecasts: each model is fitted on the training candles, then predicts over all the
    candles (features are causal, so a test forecast uses history up to its own bar only); returns the test
    bars with a column per model plus ``realized`` (the forward RV)."""
    h = _check_horizon(horizon)
    models = list(models) if models is not None else default_vol_models(h)
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    for m in models:
        if m.horizon != h:
            raise ValueError(f"model {m.name!r} has horizon {m.horizon}, expected {h}")
    train, start = split_train_test(candles, h, train_end, purge)
    cols: dict[str, pd.Series] = {}
    for m in models:
        m.fit(train)
        cols[m.name] = m.predict(candles).iloc[start:]
    cols["realized"] = realized_variance(candles, h).iloc[start:]
    return pd.DataFrame(cols)


def evaluate_vol_models(
    candles: pd.DataFrame,
    horizon: int,
    train_end: Any,
    models: Sequence[VolModel] | None = None,
    purge: int | None = None,
) -> pd.DataFrame:
    """Fit each model on the bars before ``train_end`` and score it out of sample.

    Rows: model name; columns ``qlike``, ``rmse`` (of volatility over the horizon) and ``n`` (scored
    bars). Every model is scored on the same bars: test bars (after the purge, see
    :func:`split_train_test`) where the realized variance and all the forecasts are known.
    """
    fc = vol_forecasts(candles, horizon, train_end, models, purge)
    rv = fc.pop("realized")
    ok = rv.notna() & fc.notna().all(axis=1)
    rows = {
        name: {
            "qlike": qlike(fc.loc[ok, name], rv[ok]),
            "rmse": rmse(fc.loc[ok, name], rv[ok]),
            "n": int(ok.sum()),
        }
        for name in fc.columns
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table.astype({"n": "int64"})


def register_vol_model(
    registry: Any,
    name: str,
    model: VolModel,
    candles: pd.DataFrame,
    *,
    metrics: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> str:
    """Store a fitted volatility model as a new version of ``name`` in ``registry`` (a
    :class:`~workbench.ml.registry.Registry`), with the lineage of its training ``candles`` (range, rows,
    sha256) and ``metrics`` (e.g. a row of :func:`evaluate_vol_models`); returns the version."""
    from workbench.ml.registry import candles_hash

    if not getattr(model, "fitted", True):
        raise ValueError(f"{model!r} is not fitted: fit it before registering")
    lineage = {
        "rows": len(candles),
        "start": str(candles.index[0]) if len(candles) else None,
        "end": str(candles.index[-1]) if len(candles) else None,
        "sha256": candles_hash(candles),
        **(data or {}),
    }
    arch = getattr(model, "name", type(model).__name__)
    return registry.save_artifact(
        name,
        "volatility",
        model,
        {"arch": arch, "horizon": model.horizon, "data": lineage, "metrics": {arch: metrics or {}}},
    )
