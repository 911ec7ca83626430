"""The trading half: an event-driven engine for paper and live sessions (issue 9).

Modules (imported lazily by their users; importing this package imports nothing heavy):

- :mod:`workbench.trading.journal`: the session's crash-safe journal (SQLite in WAL mode, one file per session,
  one writer and many readers in other processes; commands and their acknowledgements travel through it).
- :mod:`workbench.trading.portfolio`: positions per (symbol, tag), cash balances per currency, fees in the asset
  charged, PnL and equity; rebuilt from the journal's fills after a restart; venue balances only reconciled.
- :mod:`workbench.trading.orders`: deterministic client order ids and the order manager (intent journalled before
  it is sent; an unknown outcome resolved by querying the venue, never by resending).
- :mod:`workbench.trading.session`: the session lock, whether a session runs and its status from the journal,
  for processes that are not the engine (CLI commands, dashboards): no ccxt.
- :mod:`workbench.trading.brokers`: the broker protocol (:mod:`~workbench.trading.brokers.base`) and its
  implementations (paper, ccxt).

Layering: ``trading`` may import strategies, data, sim, config and types; it never imports ``backtest`` (and
``backtest`` never imports it). Only the ccxt broker and the feeds import ccxt.
"""
