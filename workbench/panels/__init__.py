"""Dashboard panels: ipywidgets pages over the journal, the store, the stored backtests and the registry.

One module per page, each with ``page(settings=None, **params) -> ipywidgets.Widget``; the notebooks in
``dashboards/`` only call them. Shared machinery (the live-update loop, formatting, empty states) is in
:mod:`workbench.panels.common`. Pages are imported by name (``from workbench.panels import trading``); this
package imports none of them eagerly.
"""
