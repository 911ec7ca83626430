"""Machine learning: leak-free splits, one torch trainer, price / volatility / sentiment / pattern models,
Optuna tuning, a versioned model registry and a prediction service. torch lives behind this package."""
