"""The one fill and cost model (``fills``) and the portfolio simulator (``portfolio``) shared by backtests,
sweeps and the trading engine's paper broker. Imports only numpy and numba: every layer above may use it."""
