"""The trading half: engine, orders, risk, portfolio, brokers and the journal (issue 9)."""
