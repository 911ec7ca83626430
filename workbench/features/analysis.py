"""Quick, causal-safe analysis of features against labels."""

from __future__ import annotations

import pandas as pd

__all__ = ["information_coefficient"]


def information_coefficient(features: pd.DataFrame, label: pd.Series, method: str = "spearman") -> pd.Series:
    """Rank (or Pearson) correlation of each feature with the label over the rows where both are known,
    sorted by absolute value. Compute it on a training window only: on the full sample it is a look at
    the future like any other fit."""
    both = features.join(label.rename("__label"), how="inner").dropna(subset=["__label"])
    ic = both.drop(columns="__label").corrwith(both["__label"], method=method)
    return ic.reindex(ic.abs().sort_values(ascending=False).index).rename(f"ic_{method}")
