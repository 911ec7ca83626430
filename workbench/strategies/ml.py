"""A strategy that trades on model predictions given to it as a feature column (never computed inside).

``features['prediction']`` holds, per bar, the probability of an up move over the model's horizon (a
direction model) decided at that bar's close; NaN means no prediction (e.g. outside the out-of-sample
segments), and the strategy is flat there. Long above ``upper``, short below ``lower``, flat in between.

Warm-up: one candle (the decision reads the current bar's prediction only). The predictions' own warm-up (the
model's feature windows) is the prediction service's, which computes features from the candles it is given."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.strategies.base import Param, Params, Strategy, register

__all__ = ["MLStrategy"]


@register
class MLStrategy(Strategy):
    name = "ml"
    description = "trade on a model's predicted probability of an up move"

    class Params(Params):
        upper: float = Param(0.55, low=0.5, high=0.9, step=0.01, doc="long above this probability")
        lower: float = Param(0.45, low=0.1, high=0.5, step=0.01, doc="short below this probability")

        def check(self) -> None:
            if self.lower > self.upper:
                raise ValueError(f"lower ({self.lower}) must not exceed upper ({self.upper})")

    def warmup(self) -> int:
        return 1

    def target(self, data, features=None):
        if features is None or "prediction" not in features:
            raise ValueError("the ml strategy needs predictions: features with a 'prediction' column")
        p = features["prediction"].reindex(data.index).to_numpy(dtype="float64")
        out = np.where(p > self.params.upper, 1.0, np.where(p < self.params.lower, -1.0, 0.0))
        out[np.isnan(p)] = 0.0
        return pd.Series(out, index=data.index, name=self.name, copy=False)
