"""The stage kernels are quiet: no unencrypted-TCP warning, no interrupt (SIGINT) when a finished stage's
kernel shuts down (what printed "KeyboardInterrupt caught in kernel" after a successful stage)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat

# a cell that makes the (idle) kernel record a SIGINT in a file: ipykernel restores `saved_sigint_handler`
# after each message, so setting it installs the handler for the time between messages
CELL = textwrap.dedent(
    """
    import pathlib
    def _record(signum, frame):
        pathlib.Path("sigint.txt").write_text("SIGINT")
    get_ipython().kernel.saved_sigint_handler = _record
    """
)

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import papermill as pm
    from workbench.pipeline import stage_kernel_manager
    folder = Path(sys.argv[1])
    kw = {"kernel_manager_class": stage_kernel_manager()} if sys.argv[2] == "stage" else {}
    pm.execute_notebook(str(folder / "in.ipynb"), str(folder / "out.ipynb"), kernel_name="workbench",
                        cwd=str(folder), progress_bar=False, **kw)
    """
)


def _run(folder: Path, manager: str) -> subprocess.CompletedProcess:
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL), nbformat.v4.new_code_cell("1 + 1")]
    nbformat.write(nb, folder / "in.ipynb")
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), manager], capture_output=True, text=True, timeout=180
    )


def test_stage_kernels_are_quiet(tmp_path) -> None:
    # the stock manager: the warning, and a SIGINT to the finished kernel (the reference this test stands on)
    stock = _run(tmp_path / "stock", "stock")
    assert stock.returncode == 0, stock.stderr
    assert (tmp_path / "stock" / "sigint.txt").exists() and "without encryption" in stock.stderr
    # the stage kernels' manager: neither
    quiet = _run(tmp_path / "stage", "stage")
    assert quiet.returncode == 0, quiet.stderr
    assert not (tmp_path / "stage" / "sigint.txt").exists()
    assert "without encryption" not in quiet.stderr and "KeyboardInterrupt" not in quiet.stderr
    assert (
        nbformat.read(tmp_path / "stage" / "out.ipynb", as_version=4)
        .cells[1]
        .outputs[0]["data"]["text/plain"]
        == "2"
    )
