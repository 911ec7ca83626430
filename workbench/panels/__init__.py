"""ipywidgets panels for the Voilà dashboards: they read the journal, the store, stored backtests and the registry (issue 11)."""
