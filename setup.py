"""Build hook: a wheel carries the stage notebooks, the default pipeline file and the bundled sample under
``workbench/_bundle/`` (see ``workbench/resources.py``), copied from the checkout, which stays their only
source. Everything else about the package is declared in ``pyproject.toml``."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUNDLED = ("notebooks", "dashboards", "config/pipeline.yml", "data/sample")  # = workbench.resources.BUNDLED
SKIP = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc")


class BuildPyWithBundle(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout itself
            return
        target = Path(self.build_lib) / "workbench" / "_bundle"
        for rel in BUNDLED:
            src, dst = HERE / rel, target / rel
            if not src.exists():
                raise FileNotFoundError(f"{src}: missing; a wheel must carry it (workbench/resources.py)")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=SKIP, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildPyWithBundle})
