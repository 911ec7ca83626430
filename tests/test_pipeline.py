"""The papermill pipeline end to end, failure + resume, secrets never written, scheduling lines, and the
scale-out paths: Dask LocalCluster fan-out and an Optuna study shared by several processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from html import escape as html_escape
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from conftest import ROOT

from workbench.config import load_settings
from workbench.pipeline import (
    PipelineError,
    PipelineSpec,
    list_runs,
    parse_overrides,
    record,
    resume_pipeline,
    run_pipeline,
    schedule_lines,
)
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


def _env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell outside the checkout: this package importable, no config found."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_HOME", "WORKBENCH_CONFIG")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return {**env, **extra}


def _strict_json(path: Path) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"{path}: {token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def project_run(tmp_path_factory) -> dict[str, Any]:
    """One full run of the shipped pipeline through the CLI, from a folder outside the checkout, with no
    config: the pipeline file, the notebooks and the sample must all come from the installed package."""
    tmp = tmp_path_factory.mktemp("project_run")
    elsewhere, home = tmp / "elsewhere", tmp / "home"
    elsewhere.mkdir()
    p = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "--home", str(home), "pipeline", "run", "-p", "epochs=2"],
        cwd=elsewhere,
        env=_env(WORKBENCH_BINANCE_SECRET=SECRET),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    (run,) = (home / "runs").iterdir()
    return {
        "proc": p,
        "run": run,
        "home": home,
        "elsewhere": elsewhere,
        "manifest": _strict_json(run / "manifest.json"),
    }


def test_project_pipeline_runs_end_to_end_and_writes_lineage(project_run) -> None:
    m, run = project_run["manifest"], project_run["run"]
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
    assert m["git_commit"] and "torch" in m["versions"]
    assert any("BTC/USDT 1h" in k for k in m["data_after"])
    assert m["models"]["train.model_name"]
    # -p wins over the stage's own value in the pipeline file (train: epochs 8)
    assert m["stages"]["train"]["parameters"]["epochs"] == 2 and m["overrides"] == {"epochs": 2}
    # secrets: nowhere in the run folder (parameters, executed notebooks, HTML, manifest)
    for f in run.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="ignore"), f


def test_a_run_outside_the_checkout_uses_the_shipped_pipeline_notebooks_and_sample(project_run) -> None:
    from workbench.resources import bundled

    m = project_run["manifest"]
    assert Path(m["pipeline"]) == bundled("config/pipeline.yml")
    assert all(Path(st["notebook"]).parent == bundled("notebooks") for st in m["stages"].values())
    assert not any(project_run["elsewhere"].iterdir())  # nothing written into the folder it ran from


def test_a_run_is_self_contained_and_its_manifest_is_strict_json(project_run) -> None:
    m, run, home = project_run["manifest"], project_run["run"], project_run["home"]
    report = Path(m["stages"]["backtest"]["outputs"]["report"])
    assert report == run / "reports" / "40_backtest.html" and report.stat().st_size > 10_000
    assert not (home / "reports").exists()  # nothing shared that the next run would overwrite
    assert 'href="reports/40_backtest.html"' in (run / "05_report.html").read_text()
    # metrics with NaN (e.g. an undefined ratio) are null, not the NaN token no JSON parser accepts
    for f in [run / "manifest.json", *(run / "outputs").glob("*.json")]:
        _strict_json(f)
    metrics = m["stages"]["backtest"]["outputs"]["metrics"]
    assert isinstance(metrics["beta"], float)  # the notebook's beta: to buy and hold of the same symbol
    from workbench.pipeline import _dumps

    assert json.loads(_dumps({"ratio": float("nan")})) == {"ratio": None}  # what a NaN metric is written as


def test_the_report_states_the_promotion_the_run_then_makes(project_run) -> None:
    from workbench.ml.registry import Registry
    from workbench.ml.train import baseline_verdict

    m, run = project_run["manifest"], project_run["run"]
    name, version = m["models"]["train.model_name"], m["models"]["train.model_version"]
    reg = Registry(project_run["home"] / "models")
    meta = reg.meta(name, version)
    reason = baseline_verdict(meta["metrics"], meta["arch"], meta["target"])
    report = (run / "05_report.html").read_text()
    if reason is None:
        assert m["promoted"] == [f"{name} {version}"] and reg.promoted(name) == version
        assert "beats or ties every baseline" in report
    else:  # the sample's small MLP loses to logistic regression on accuracy: refused, and said so
        assert m["promoted"] == [] and m["not_promoted"] == {f"{name} {version}": reason}
        assert reg.promoted(name) is None
        assert f"not promoted: {reason}" in project_run["proc"].stderr
        assert html_escape(reason) in report
    assert "promoted_now" in report


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


# ------------------------------------------------------------------------------ parameters (item 19)


def test_unknown_parameters_are_errors_with_a_hint(tmp_path) -> None:
    s = _settings(tmp_path)
    spec = PipelineSpec.load(ROOT / "config" / "pipeline.yml")
    with pytest.raises(PipelineError, match=r"unknown parameter 'symbl'.*did you mean 'symbol'"):
        run_pipeline(s, spec, overrides={"symbl": "ETH/USDT"})
    assert not (s.data_dir / "runs").exists()
    shipped = yaml.safe_load((ROOT / "config" / "pipeline.yml").read_text())
    bad = {**shipped, "parameters": {**shipped["parameters"], "timefrme": "4h"}}
    (tmp_path / "config" / "bad.yml").write_text(yaml.safe_dump(bad))
    with pytest.raises(
        PipelineError, match=r"bad.yml: parameters: unknown parameter 'timefrme'.*'timeframe'"
    ):
        PipelineSpec.load(tmp_path / "config" / "bad.yml")
    bad = json.loads(json.dumps(shipped))
    bad["stages"][2]["parameters"]["epoch"] = 3
    (tmp_path / "config" / "bad.yml").write_text(yaml.safe_dump(bad))
    with pytest.raises(
        PipelineError,
        match=r"stage train: parameter 'epoch' is not declared by .*30_train.ipynb; did you mean 'epochs'",
    ):
        PipelineSpec.load(tmp_path / "config" / "bad.yml")
    # as a user types it
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "--home",
            str(tmp_path / "h"),
            "pipeline",
            "run",
            "-p",
            "symbl=ETH/USDT",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        p.returncode == 1 and "unknown parameter 'symbl'" in p.stderr and "did you mean 'symbol'" in p.stderr
    )
    assert not (tmp_path / "h" / "runs").exists()


def test_parameter_values_and_tokens() -> None:
    assert parse_overrides({"since": "@last", "epochs": "20", "symbol": "ETH/USDT", "until": ""}) == {
        "since": "@last",
        "epochs": 20,
        "symbol": "ETH/USDT",
        "until": "",
    }
    with pytest.raises(PipelineError, match=r"-p since=@lats: unknown token '@lats'; tokens: @last"):
        parse_overrides({"since": "@lats"})
    with pytest.raises(PipelineError, match=r"-p grid=\[1, 2: not a YAML value"):
        parse_overrides({"grid": "[1, 2"})


def test_the_scheduled_command_runs_and_resumes_from_the_last_run(tmp_path) -> None:
    s = _settings(tmp_path)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    a = _nb(
        nbs / "a.ipynb",
        "since: str = 'unset'",
        "from workbench.pipeline import record\nrecord('since', since)",
    )
    pipeline = tmp_path / "config" / "p.yml"
    pipeline.write_text(yaml.safe_dump({"promote": False, "stages": [{"name": "a", "notebook": a}]}))
    lines = schedule_lines(s, "0 * * * *", pipeline, sys.executable)
    cmd = lines["cron"].split(" ", 5)[5].rsplit(" >> ", 1)[0]
    for _ in range(2):
        p = subprocess.run(["/bin/sh", "-c", cmd], env=_env(), capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
    first, second = sorted(list_runs(s), key=lambda r: r["started"])
    assert first["stages"]["a"]["outputs"]["since"] == ""  # no earlier run
    assert second["stages"]["a"]["outputs"]["since"] == first["finished"]
    # a pipeline whose stages take no `since` cannot be scheduled
    b = _nb(nbs / "b.ipynb", "x: int = 1")
    pipeline.write_text(yaml.safe_dump({"stages": [{"name": "b", "notebook": b}]}))
    with pytest.raises(PipelineError, match=r"scheduled runs pass -p since=@last: unknown parameter 'since'"):
        schedule_lines(s, "0 * * * *", pipeline, sys.executable)


def test_a_missing_kernel_is_a_clear_error_before_anything_runs(tmp_path) -> None:
    s = _settings(tmp_path)
    spec = PipelineSpec.load(ROOT / "config" / "pipeline.yml")
    with pytest.raises(PipelineError, match=r"no Jupyter kernel named 'nokernel'.*ipykernel install"):
        run_pipeline(s, spec, kernel="nokernel")
    assert not (s.data_dir / "runs").exists()


def test_recorded_values_are_strict_json(tmp_path, monkeypatch) -> None:
    import numpy as np

    out = tmp_path / "o.json"
    monkeypatch.setenv("WORKBENCH_RUN_OUTPUTS", str(out))
    record("metrics", {"sharpe": float("nan"), "sortino": np.float32("inf"), "n": np.int64(3), "ok": 1.5})
    assert _strict_json(out) == {"metrics": {"sharpe": None, "sortino": None, "n": 3, "ok": 1.5}}


# ------------------------------------------------------------------------------ the run lock (item 17)


def test_a_run_in_progress_is_locked_and_a_killed_run_frees_its_lock(tmp_path) -> None:
    s = _settings(tmp_path)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    gate, started = tmp_path / "gate", tmp_path / "started"
    a = _nb(
        nbs / "a.ipynb",
        "gate: str = ''\nstarted: str = ''",
        "import time\nfrom pathlib import Path\nPath(started).write_text(str(time.time()))\n"
        "for _ in range(3000):\n    if Path(gate).exists():\n        break\n    time.sleep(0.1)\n"
        "assert Path(gate).exists(), 'the gate never opened'",
    )
    pipeline = tmp_path / "config" / "p.yml"
    pipeline.write_text(
        yaml.safe_dump(
            {
                "parameters": {"gate": str(gate), "started": str(started)},
                "stages": [{"name": "a", "notebook": a}],
            }
        )
    )
    wb = [sys.executable, "-m", "workbench.cli", "--config", str(tmp_path / "config")]
    holder = subprocess.Popen(
        [*wb, "pipeline", "run", "--pipeline", str(pipeline)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(1200):
            if started.exists() or holder.poll() is not None:
                break
            time.sleep(0.1)
        assert started.exists(), "the first run never reached its stage"
        (run_dir,) = (s.data_dir / "runs").iterdir()
        run_id = run_dir.name
        # a second process (the CLI) and this one are both refused, with the holder named
        p = subprocess.run(
            [*wb, "pipeline", "resume", run_id], env=_env(), capture_output=True, text=True, timeout=300
        )
        assert p.returncode == 1 and f"run {run_id} is in progress" in p.stderr
        assert f"pid {holder.pid}" in p.stderr
        with pytest.raises(PipelineError, match=rf"run {run_id} is in progress .*pid {holder.pid} holds"):
            resume_pipeline(s, None, run_id)
        with pytest.raises(PipelineError, match=rf"run {run_id} exists already"):
            run_pipeline(s, PipelineSpec.load(pipeline), run_id=run_id)
        assert json.loads((run_dir / "manifest.json").read_text())["stages"]["a"]["status"] == "running"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # the whole run: its CLI process, not a clean exit
        holder.wait(timeout=60)
    # the OS freed the lock with the process: the killed run resumes
    gate.write_text("open")
    m = resume_pipeline(s, None, run_id)
    assert m["status"] == "succeeded" and m["pid"] == os.getpid()


# ------------------------------------------------------------------------------ promotion (items 18, 22)


def test_a_run_promotes_only_models_that_beat_their_baselines_and_its_report_says_so(tmp_path) -> None:
    s = _settings(tmp_path)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    register = (
        "import pandas as pd\nimport workbench.data as wbd\nfrom workbench.features import Scaler\n"
        "from workbench.ml.models import build_model\nfrom workbench.ml.registry import Registry\n"
        "from workbench.pipeline import record\n"
        "reg = Registry(wbd.open_store().root / 'models')\n"
        "scaler = Scaler('robust').fit(pd.DataFrame({'a': [1.0, 2.0, 3.0]}))\n"
        "meta = {'arch': 'mlp', 'target': 'direction', 'feature_names': ['a'],\n"
        "        'metrics': {'mlp': {'accuracy': accuracy}, 'logistic': {'accuracy': 0.55}}}\n"
        "record('model_name', name)\nrecord('model_version', reg.save(name, build_model('mlp', 1), scaler, meta))"
    )
    good = _nb(nbs / "good.ipynb", "name: str = 'good'\naccuracy: float = 0.6", register)
    bad = _nb(nbs / "bad.ipynb", "name: str = 'bad'\naccuracy: float = 0.5", register)
    report = _nb(
        nbs / "report.ipynb",
        "x: int = 0",
        "from workbench.pipeline import promotion_plan, record\n"
        "record('good', promotion_plan('good', 'v0001'))\nrecord('bad', promotion_plan('bad', 'v0001'))",
    )
    pipeline = tmp_path / "config" / "p.yml"
    stages = [{"name": n, "notebook": nb} for n, nb in (("good", good), ("bad", bad), ("report", report))]
    pipeline.write_text(yaml.safe_dump({"promote": True, "stages": stages}))
    m = run_pipeline(s, PipelineSpec.load(pipeline))
    reason = "mlp loses to its baseline out of sample: accuracy 0.5000 (higher is better) vs logistic 0.5500"
    assert m["promoted"] == ["good v0001"] and m["not_promoted"] == {"bad v0001": reason}
    from workbench.ml.registry import Registry

    reg = Registry(s.data_dir / "models")
    assert reg.promoted("good") == "v0001" and reg.promoted("bad") is None
    plan = m["stages"]["report"]["outputs"]
    assert (
        plan["good"]["promote"] is True and plan["good"]["promoted_now"] is None
    )  # promoted after the report
    assert plan["bad"] == {**plan["bad"], "promote": False, "reason": reason}


def test_a_run_manifest_from_a_newer_schema_is_refused_by_name(tmp_path) -> None:
    """Run manifests state their schema version: a newer one (or a damaged one) is an error naming the file, and
    ``list_runs`` leaves it out; one written before the field existed reads as version 1."""
    from workbench.pipeline import MANIFEST_SCHEMA_VERSION, PipelineError, read_manifest

    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"run_id": "r1", "status": "failed"}))
    assert read_manifest(path)["run_id"] == "r1"
    path.write_text(json.dumps({"run_id": "r1", "schema_version": MANIFEST_SCHEMA_VERSION + 1}))
    with pytest.raises(
        PipelineError, match=rf"manifest\.json: manifest schema_version {MANIFEST_SCHEMA_VERSION + 1}"
    ):
        read_manifest(path)
    path.write_text('{"run_id": "r')
    with pytest.raises(PipelineError, match=r"manifest\.json: unreadable manifest"):
        read_manifest(path)
