"""Brokers: where orders go. :mod:`~workbench.trading.brokers.base` holds the protocol, the market rules and the
errors every broker raises; ``paper`` and ``ccxt`` implement it (only ``ccxt`` imports ccxt)."""

from workbench.trading.brokers.base import (
    Broker,
    BrokerError,
    BrokerUnavailable,
    DuplicateOrder,
    MarketRuleError,
    MarketRules,
    OrderRejected,
    UnknownOutcome,
)

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "DuplicateOrder",
    "MarketRuleError",
    "MarketRules",
    "OrderRejected",
    "UnknownOutcome",
]
