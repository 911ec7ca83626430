"""Machine learning: leak-free splits, one torch trainer, price / volatility / sentiment models,
Optuna tuning, a versioned model registry and a prediction service. torch lives behind this package.
Chart patterns are in :mod:`workbench.features.patterns`, news feeds in :mod:`workbench.data.news`."""
