"""Prediction service: the promoted model, scoring candles with exactly the training-time pipeline.

Batch (:meth:`PredictionService.predict_batch`) and incremental (:meth:`PredictionService.update`, one new
closed bar at a time, as the live engine will call it) run the same code: features from the registered spec,
the registered scaler, the registered window. The incremental path keeps only the last ``lookback`` bars,
long enough for every recursive indicator to have forgotten its start (see
:func:`workbench.ml.datasets.feature_lookback`), so both agree to float precision (tested).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import pandas as pd
import torch

from workbench.features import FeatureSpec
from workbench.ml.datasets import feature_lookback, make_features, windows
from workbench.ml.registry import LoadedModel, Registry

__all__ = ["PredictionService"]


class PredictionService:
    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        meta = loaded.meta
        self.spec = FeatureSpec.model_validate(meta["spec"])  # validated once, not per bar
        self.window = int(meta["window"])
        self.target = meta["target"]
        self.feature_names = list(meta["feature_names"])
        self.lookback = feature_lookback(self.spec) + self.window
        self._bars: deque[tuple] = deque(maxlen=self.lookback)
        self.latency_s: deque[float] = deque(maxlen=1000)
        self.model_latency_s: deque[float] = deque(maxlen=1000)

    @classmethod
    def from_registry(
        cls, registry: Registry, name: str, version: str | None = "promoted"
    ) -> PredictionService:
        return cls(registry.load(name, version))

    @property
    def version(self) -> str:
        return self.loaded.version

    def _scaled(self, candles: pd.DataFrame) -> np.ndarray:
        f = make_features(candles, self.spec)
        if list(f.columns) != self.feature_names:
            raise ValueError(
                "the feature pipeline no longer produces the registered features (code changed?)"
            )
        sc = self.loaded.scaler
        assert sc.center_ is not None and sc.scale_ is not None
        x = (
            f.to_numpy("float64") - sc.center_.to_numpy()
        ) / sc.scale_.to_numpy()  # Scaler.transform, in numpy
        return x.astype("float32")

    def _forward(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.loaded.model(torch.from_numpy(np.ascontiguousarray(X))).squeeze(-1).numpy()
        return 1.0 / (1.0 + np.exp(-out)) if self.target == "direction" else out

    def predict_batch(self, candles: pd.DataFrame) -> pd.Series:
        """One prediction per bar (probability of an up move for ``direction`` models), NaN where the window
        is not yet complete. The value at bar t uses data up to the close of t."""
        x = self._scaled(candles)
        ok = np.isfinite(x).all(axis=1)
        out = np.full(len(candles), np.nan)
        if len(candles) >= self.window:
            W = windows(np.nan_to_num(x, nan=0.0), self.window)
            csum = np.concatenate([[0], np.cumsum(~ok)])
            valid = (csum[self.window :] - csum[: len(candles) - self.window + 1]) == 0
            pos = np.flatnonzero(valid)
            if len(pos):
                X = W[pos]
                X = X[:, 0, :] if self.window == 1 else X
                out[pos + self.window - 1] = self._forward(X)
        return pd.Series(out, index=candles.index, name=f"{self.loaded.name}:{self.version}")

    def update(self, bar: pd.Series | pd.DataFrame) -> float:
        """Append closed bar(s) (index = bar-open time, OHLCV) and return the prediction at the last one."""
        t0 = time.perf_counter()
        rows = bar.to_frame().T if isinstance(bar, pd.Series) else bar
        for ts, r in rows.iterrows():
            if self._bars and ts <= self._bars[-1][0]:
                raise ValueError(f"bar {ts} is not after the last bar {self._bars[-1][0]}")
            self._bars.append(
                (
                    ts,
                    float(r["open"]),
                    float(r["high"]),
                    float(r["low"]),
                    float(r["close"]),
                    float(r["volume"]),
                )
            )
        if len(self._bars) < self.window:
            return float("nan")
        buf = pd.DataFrame(
            list(self._bars), columns=["time", "open", "high", "low", "close", "volume"]
        ).set_index("time")
        x = self._scaled(buf)[-self.window :]
        if not np.isfinite(x).all():
            return float("nan")
        X = x[None, :, :] if self.window > 1 else x[-1:, :]
        t1 = time.perf_counter()
        p = float(self._forward(X)[0])
        self.model_latency_s.append(time.perf_counter() - t1)
        self.latency_s.append(time.perf_counter() - t0)
        return p
