"""Derived settings are resolved once, in ``Settings``, and every user takes them from there: the model registry
(``ml.registry``), the Optuna storage (``ml.optuna.storage``) and torch's threads (``ml.torch_threads``).

End to end with a configured registry and storage: ``workbench train --promote`` and ``models ls`` / ``predict``
through the CLI, and a pipeline run of the shipped train and report notebooks whose promotion finds the model
the notebook registered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, sample_candles

from workbench.config import load_settings

WB = [sys.executable, "-m", "workbench.cli"]


def _config(tmp_path: Path, **ml: object) -> Path:
    """A config folder: data under tmp/data, the sample of the checkout, and ``ml`` settings."""
    cfg = tmp_path / "config"
    cfg.mkdir(parents=True)
    (cfg / "workbench.yml").write_text(
        yaml.safe_dump({"paths": {"data": str(tmp_path / "data"), "sample": str(ROOT / "data" / "sample")}})
    )
    (cfg / "ml.yml").write_text(yaml.safe_dump(ml))
    return cfg


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_HOME", "WORKBENCH_CONFIG")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _wb(cfg: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [*WB, "--config", str(cfg), *args], capture_output=True, text=True, env=_env(), cwd=cwd, timeout=600
    )
    assert p.returncode == 0, f"{args} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


# ------------------------------------------------------------------------------------------ the library


def test_optimize_without_a_storage_uses_the_configured_one_not_the_current_folder(tmp_path, monkeypatch):
    from workbench.backtest.optimize import optimize

    cfg = _config(tmp_path, optuna={"storage": "sqlite:///{data}/studies/wf.db"})
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("WORKBENCH_CONFIG", str(cfg))
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    r = optimize(sample_candles(n=1500), "sma_cross", trials=2, folds=1)
    assert (
        r.storage == load_settings(cfg, env={}).optuna_storage == f"sqlite:///{tmp_path}/data/studies/wf.db"
    )
    assert (tmp_path / "data" / "studies" / "wf.db").is_file()
    assert not any(work.iterdir())  # no optuna.db in the folder it ran from


def test_the_trainer_keeps_the_threads_the_process_set_from_the_settings(tmp_path) -> None:
    import numpy as np
    import torch

    from workbench.ml.trainer import TrainConfig, Trainer, set_threads

    n = min(2, os.cpu_count() or 1)
    if n < 2:
        pytest.skip("one core: every thread count is 1")
    s = load_settings(_config(tmp_path, torch_threads=n), env={})
    before = torch.get_num_threads()
    try:
        assert set_threads(s.ml.torch_threads) == n
        x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
        y = (x[:, 0] > 0).astype("float32")
        Trainer(torch.nn.Linear(3, 1), "bce", TrainConfig(epochs=1, progress=False)).fit((x, y))
        assert torch.get_num_threads() == n  # not reset to a default nor read from the environment
        Trainer(torch.nn.Linear(3, 1), "bce", TrainConfig(epochs=1, threads=1, progress=False)).fit((x, y))
        assert torch.get_num_threads() == 1  # an explicit TrainConfig.threads wins for its run
    finally:
        torch.set_num_threads(before)


def test_open_registry_is_the_configured_folder(tmp_path) -> None:
    from workbench.ml.registry import Registry, open_registry

    cfg = _config(tmp_path, registry=str(tmp_path / "elsewhere" / "reg"))
    s = load_settings(cfg, env={})
    assert open_registry(cfg).root == s.registry_dir == tmp_path / "elsewhere" / "reg"
    assert Registry.from_settings(s).root == s.registry_dir
    rel = load_settings(_config(tmp_path / "b", registry="prices/reg"), env={})
    assert open_registry(rel).root == tmp_path / "b" / "data" / "prices" / "reg"


NEEDLES = (
    '/ "models"',  # the registry joined to the data folder by hand
    '/ \\"models\\"',  # the same inside a notebook's JSON
    "optuna.db",  # a storage file named outside ml.optuna.storage
    "Path(s.ml.registry)",
    "Path(settings.ml.registry)",
    '.replace("{data}"',
    "WORKBENCH__ML__TORCH_THREADS",  # threads through the environment
)


def test_no_module_or_notebook_resolves_the_derived_settings_itself() -> None:
    """The registry, the Optuna storage and the threads come from Settings: nobody else joins ml.registry to
    the data folder, replaces {data} or passes threads through the environment."""
    offenders = []
    files = [*(ROOT / "workbench").rglob("*.py"), *(ROOT / "notebooks").glob("*.ipynb")]
    for f in files:
        if f.name == "config.py":
            continue
        text = f.read_text()
        for needle in NEEDLES:
            if needle in text:
                offenders.append(f"{f.relative_to(ROOT)}: {needle}")
    assert offenders == []


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_train_promotes_into_the_configured_registry_and_tunes_in_the_configured_storage(tmp_path) -> None:
    cfg = _config(
        tmp_path,
        registry="registry/prices",
        optuna={"storage": "sqlite:///{data}/studies/train.db"},
        torch_threads=1,
    )
    data, reg = tmp_path / "data", tmp_path / "data" / "registry" / "prices"
    work = tmp_path / "work"
    work.mkdir()
    _wb(cfg, "init", "--sample", cwd=work)
    base = ["-e", "binance", "-s", "BTC/USDT", "-t", "1h"]
    _wb(cfg, "train", "--model", "mlp", *base, "--folds", "2", "--epochs", "2", "--trials", "1",
        "--promote", "--force", "--json", str(tmp_path / "t.json"), cwd=work)  # fmt: skip
    t = json.loads((tmp_path / "t.json").read_text())
    name, version = t["name"], t["version"]
    assert t["promoted"] is True
    from workbench.ml.registry import Registry

    assert Registry(reg).promoted(name) == version and (reg / name / version / "model.pt").is_file()
    assert json.loads((reg / name / version / "meta.json").read_text())["torch_threads"] == 1
    assert (data / "studies" / "train.db").is_file()
    assert not (data / "models").exists() and not (data / "optuna.db").exists() and not any(work.iterdir())
    assert f"{name}" in _wb(cfg, "models", "ls", cwd=work).stdout
    p = _wb(cfg, "predict", "--model", name, *base, "--last", "2", cwd=work)
    assert version in p.stdout


@pytest.mark.slow
def test_a_pipeline_of_the_shipped_notebooks_promotes_into_the_configured_registry(tmp_path) -> None:
    from workbench.ml.registry import Registry
    from workbench.pipeline import PipelineSpec, run_pipeline

    reg_dir = tmp_path / "shared-registry"
    cfg = _config(tmp_path, registry=str(reg_dir))
    spec = cfg / "pipeline.yml"
    spec.write_text(
        yaml.safe_dump(
            {
                "parameters": {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"},
                "promote": True,
                "stages": [
                    {
                        "name": "train",
                        "notebook": str(ROOT / "notebooks" / "30_train.ipynb"),
                        "parameters": {"epochs": 2, "folds": 2, "promote": False, "vol_horizon": 24},
                    },
                    {
                        "name": "report",
                        "notebook": str(ROOT / "notebooks" / "50_report.ipynb"),
                        "inputs": {"model_name": "train.model_name", "model_version": "train.model_version"},
                    },
                ],
            }
        )
    )
    s = load_settings(cfg, env={})
    m = run_pipeline(s, PipelineSpec.load(spec))
    assert m["status"] == "succeeded", m
    name, version = m["models"]["train.model_name"], m["models"]["train.model_version"]
    reg = Registry(reg_dir)
    assert reg.versions(name) == [version]  # the notebook registered into the configured registry
    assert not (s.data_dir / "models").exists()
    label = f"{name} {version}"
    if m["promoted"]:
        assert m["promoted"] == [label] and reg.promoted(name) == version
    else:
        assert "loses to its baseline" in m["not_promoted"][label] and reg.promoted(name) is None
    # the report notebook read the model's lineage from the same registry
    report = s.data_dir / "runs" / m["run_id"] / "02_report.ipynb"
    assert version in report.read_text()
