"""The ``workbench`` command line: the composition root (it may import every layer).

``app`` (in :mod:`workbench.cli.app`) holds the research, data, ML and pipeline commands; each further area
registers its commands on it from a module of its own (``register(app)``), imported here.
"""

from workbench.cli import backtests as _backtests
from workbench.cli import dashboards as _dashboards
from workbench.cli import journal as _journal
from workbench.cli import news as _news
from workbench.cli import replay as _replay
from workbench.cli import secrets as _secrets
from workbench.cli import services as _services
from workbench.cli import trade as _trade
from workbench.cli.app import app, main, settings

for _area in (_secrets, _replay, _trade, _journal, _services, _backtests, _dashboards, _news):
    _area.register(app)

__all__ = ["app", "main", "settings"]
