"""The papermill pipeline end to end, failure + resume, secrets never written, scheduling lines, and the
scale-out paths: Dask LocalCluster fan-out and an Optuna study shared by several processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import ROOT

from workbench.config import load_settings
from workbench.pipeline import PipelineError, PipelineSpec, resume_pipeline, run_pipeline, schedule_lines
from workbench.scale import init_storage

pytestmark = pytest.mark.slow
SECRET = "sEcReT-value-that-must-never-be-written-0123456789"


def _settings(tmp_path: Path):
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    (cfg / "workbench.yml").write_text(
        yaml.safe_dump({"paths": {"data": str(tmp_path / "data"), "sample": str(ROOT / "data/sample")}})
    )
    return load_settings(cfg, env={})


def _nb(path: Path, params: str, *cells: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# test stage"),
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        *[nbformat.v4.new_code_cell(c) for c in cells],
    ]
    nb.metadata["kernelspec"] = {"name": "workbench", "display_name": "workbench", "language": "python"}
    nbformat.write(nb, path)
    return str(path)


def test_project_pipeline_runs_end_to_end_and_writes_lineage(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_BINANCE_SECRET", SECRET)
    s = _settings(tmp_path)
    spec = PipelineSpec.load(ROOT / "config" / "pipeline.yml")
    m = run_pipeline(s, spec, overrides={"epochs": 3, "trials": 3})
    run = s.data_dir / "runs" / m["run_id"]
    assert m["status"] == "succeeded" and list(m["stages"]) == [
        "collect",
        "features",
        "train",
        "backtest",
        "report",
    ]
    for i, name in enumerate(m["stages"], 1):
        assert (run / f"{i:02d}_{name}.ipynb").is_file() and (run / f"{i:02d}_{name}.html").is_file()
        assert m["stages"][name]["seconds"] > 0
    html = (run / "03_train.html").read_text()
    assert "train_model(" not in html  # exported without code
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["git_commit"] and "torch" in manifest["versions"]
    assert any("BTC/USDT 1h" in k for k in manifest["data_after"])
    assert manifest["models"]["train.model_name"] and manifest["promoted"]
    from workbench.ml.registry import Registry

    reg = Registry(s.data_dir / "models")
    assert reg.promoted(manifest["models"]["train.model_name"]) == manifest["models"]["train.model_version"]
    # secrets: nowhere in the run folder (parameters, executed notebooks, HTML, manifest)
    for f in run.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="ignore"), f


def test_a_failing_stage_stops_the_run_promotes_nothing_and_resumes(tmp_path) -> None:
    s = _settings(tmp_path)
    flag = tmp_path / "flag"
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    a = _nb(
        nbs / "a.ipynb",
        "x: int = 1",
        "from workbench.pipeline import record\nrecord('value', x * 2)\n"
        "record('model_name', 'm')\nrecord('model_version', 'v0001')",
    )
    b = _nb(
        nbs / "b.ipynb",
        "value: int = 0\nflag: str = ''",
        "from pathlib import Path\nassert Path(flag).exists(), 'the flag file is missing'\nprint(value)",
    )
    (tmp_path / "config" / "p.yml").write_text(
        yaml.safe_dump(
            {
                "parameters": {"x": 21, "flag": str(flag)},
                "promote": False,
                "stages": [
                    {"name": "a", "notebook": a},
                    {"name": "b", "notebook": b, "inputs": {"value": "a.value"}},
                ],
            }
        )
    )
    spec = PipelineSpec.load(tmp_path / "config" / "p.yml")
    with pytest.raises(PipelineError) as e:
        run_pipeline(s, spec)
    msg = str(e.value)
    assert "stage b failed: AssertionError: the flag file is missing" in msg and "02_b.ipynb (cell " in msg
    run_id = msg.rsplit("resume ", 1)[1].strip()
    cell = int(msg.split("(cell ")[1].split()[0])
    executed = nbformat.read(s.data_dir / "runs" / run_id / "02_b.ipynb", as_version=4)
    assert "assert Path(flag).exists()" in executed.cells[cell].source
    m = json.loads((s.data_dir / "runs" / run_id / "manifest.json").read_text())
    assert m["status"] == "failed" and m["stages"]["a"]["status"] == "succeeded"
    assert m["stages"]["b"]["error"]["ename"] == "AssertionError" and m["promoted"] is None
    a_mtime = (s.data_dir / "runs" / run_id / "01_a.ipynb").stat().st_mtime
    flag.write_text("ok")
    m = resume_pipeline(s, spec, run_id)
    assert m["status"] == "succeeded" and m["stages"]["b"]["parameters"]["value"] == 42
    assert (s.data_dir / "runs" / run_id / "01_a.ipynb").stat().st_mtime == a_mtime  # not rerun
    with pytest.raises(PipelineError, match="already succeeded"):
        resume_pipeline(s, spec, run_id)


def test_secret_looking_parameters_are_refused(tmp_path) -> None:
    s = _settings(tmp_path)
    spec = PipelineSpec.load(ROOT / "config" / "pipeline.yml")
    with pytest.raises(PipelineError, match="'api_key' looks like a credential"):
        run_pipeline(s, spec, overrides={"api_key": "x"})
    assert not (s.data_dir / "runs").exists()


def test_bad_pipeline_files_name_the_problem(tmp_path) -> None:
    p = tmp_path / "p.yml"
    p.write_text("stages:\n  - name: a\n    notebook: nope.ipynb\n")
    with pytest.raises(PipelineError, match=r"stages\[0\] \(a\): notebook nope.ipynb not found"):
        PipelineSpec.load(p)
    p.write_text("stagez: []\n")
    with pytest.raises(PipelineError, match="non-empty 'stages'"):
        PipelineSpec.load(p)


def test_schedule_lines(tmp_path) -> None:
    s = _settings(tmp_path)
    lines = schedule_lines(s, "15 */2 * * *", "config/pipeline.yml", "/usr/bin/python3")
    assert lines["cron"].startswith("15 */2 * * * cd ") and "since=@last" in lines["cron"]
    assert "OnCalendar=*-*-* 0/2:15:00" in lines["timer"]


def test_dask_fans_out_sweeps_and_optimisations(tmp_path) -> None:
    from workbench.backtest.sweep import sweep
    from workbench.data.sample import load_sample
    from workbench.data.store import Store
    from workbench.scale import client, optimize_symbols, sweep_symbols

    store = Store(tmp_path / "data")
    load_sample(store, ROOT / "data/sample", kinds=("candles",))
    frames = {sym: store.candles("binance", sym, "1h") for sym in ("BTC/USDT", "ETH/USDT")}
    grid = {"fast": [5, 10, 20], "slow": [50, 100]}
    with client(n_workers=2) as c:
        table = sweep_symbols(c, frames, "sma_cross", grid, {"fees": 0.001})
        for sym, df in frames.items():
            local = sweep(df, "sma_cross", grid)
            got = table[table["symbol"] == sym].sort_values(["fast", "slow"])["final_equity"].to_numpy()
            want = local.table.sort_values(["fast", "slow"])["final_equity"].to_numpy()
            assert got.tolist() == pytest.approx(want.tolist(), rel=1e-12)
        res = optimize_symbols(
            c, frames, "sma_cross", trials=4, folds=2, storage=f"sqlite:///{tmp_path / 'o.db'}"
        )
        assert {r["symbol"] for r in res} == set(frames) and all(len(r["folds"]) == 2 for r in res)


def test_an_optuna_study_shared_by_two_processes_through_rdb_storage(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    code = (
        "import pandas as pd; from workbench.types import candles_from_frame; from workbench.backtest.optimize import optimize\n"
        f"c = candles_from_frame(pd.read_csv({str(ROOT / 'data/sample/binance/BTCUSDT_1h.csv.gz')!r}), timeframe='1h', source='s')\n"
        "c.attrs.update(symbol='BTC/USDT', timeframe='1h', exchange='binance')\n"
        f"optimize(c, 'sma_cross', trials=16, folds=1, storage={url!r})\n"
    )
    import optuna

    init_storage(url)  # create the schema once, as a deployment does before starting workers
    procs = [subprocess.Popen([sys.executable, "-c", code], env={**os.environ}) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0

    (name,) = optuna.get_all_study_names(url)
    trials = optuna.load_study(study_name=name, storage=url).trials
    finished = [t for t in trials if t.state.is_finished()]
    assert 16 <= len(finished) <= 17  # the workers shared one budget (one may finish a trial in flight)
