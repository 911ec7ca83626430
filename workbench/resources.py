"""Files that ship with the package: the stage notebooks, the dashboards, the default pipeline file and the bundled
sample.

In a checkout (and an editable install) they are the checkout's own ``notebooks/``, ``config/pipeline.yml``
and ``data/sample/``. A built wheel carries copies of them under ``workbench/_bundle/`` with the same layout
(``setup.py`` copies them at build time, so the checkout stays the single source), which is what an installed
workbench finds from any folder.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLED", "bundle_root", "bundled"]

# what a wheel carries, as paths relative to the checkout root (setup.py copies exactly these)
BUNDLED = ("notebooks", "dashboards", "config/pipeline.yml", "data/sample")

_PACKAGE = Path(__file__).resolve().parent


def bundle_root() -> Path | None:
    """The folder holding ``notebooks/``, ``config/pipeline.yml`` and ``data/sample/``: the installed bundle,
    else the checkout this package sits in; None when neither is there."""
    installed = _PACKAGE / "_bundle"
    if (installed / "config" / "pipeline.yml").is_file():
        return installed
    checkout = _PACKAGE.parent
    if (checkout / "config" / "pipeline.yml").is_file() and (checkout / "notebooks").is_dir():
        return checkout
    return None


def bundled(relative: str) -> Path | None:
    """A shipped file or folder by its checkout-relative path (``notebooks/10_collect.ipynb``,
    ``data/sample``), or None when this installation does not carry it."""
    root = bundle_root()
    if root is None:
        return None
    p = root / relative
    return p if p.exists() else None
