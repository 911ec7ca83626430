"""workbench: a Jupyter-centric research and trading workbench for crypto markets."""

from __future__ import annotations

__version__ = "0.1.0"

# The modules with compiled (numba ``cache=True``) functions. numba's on-disk cache of a function is checked
# against its own source file only, not against the compiled functions it calls from other files: after a change
# to ``sim/fills.py`` a cached sweep kernel of ``backtest/kernels.py`` would go on running the old fill rule. So the
# cache lives in a folder keyed on the source of all of them (tests/test_speed.py checks this list is complete).
COMPILED_MODULES = (
    "backtest/kernels.py",
    "sim/fills.py",
    "sim/portfolio.py",
    "strategies/signals.py",
)
_KEEP_CACHES = 4  # older keyed folders beyond these are removed
_MARK = "_WORKBENCH_NUMBA_CACHE"  # the NUMBA_CACHE_DIR workbench set (one that differs is the user's)


def numba_cache_dir() -> str | None:
    """Point numba's cache at ``$XDG_CACHE_HOME/workbench/numba/<hash of COMPILED_MODULES>`` (``~/.cache`` by
    default), unless ``NUMBA_CACHE_DIR`` is set already (then it is the user's choice, and theirs to clear).
    Returns the folder in use (None: numba's default, next to the sources)."""
    import hashlib
    import os
    import sys
    from pathlib import Path

    given = os.environ.get("NUMBA_CACHE_DIR")
    if given is not None and given != os.environ.get(_MARK):  # set by the user (not inherited from us)
        return given or None
    here = Path(__file__).resolve().parent
    h = hashlib.blake2b(digest_size=8)
    for rel in COMPILED_MODULES:
        h.update(rel.encode())
        h.update((here / rel).read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "workbench" / "numba"
    folder = base / h.hexdigest()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)  # the newest in use, for the pruning below
        older = sorted(
            (p for p in base.iterdir() if p.is_dir() and p != folder), key=lambda p: p.stat().st_mtime
        )
        for old in older[: max(len(older) - (_KEEP_CACHES - 1), 0)]:
            import shutil

            shutil.rmtree(old, ignore_errors=True)
    except OSError:
        return None  # not writable: numba's default
    os.environ["NUMBA_CACHE_DIR"] = os.environ[_MARK] = str(
        folder
    )  # a child keys it again on its own sources
    if "numba" in sys.modules:  # imported before workbench (a notebook's earlier cell): make numba read it
        from numba.core import config

        config.reload_config()
    return str(folder)


numba_cache_dir()
