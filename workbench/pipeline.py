"""The notebook pipeline: stage notebooks executed with papermill into a run folder, with lineage.

``config/pipeline.yml`` lists the stages (notebook, parameters, outputs). ``run`` executes them in order in the
project's Jupyter kernel and writes ``data/runs/<run_id>/``:

    NN_<stage>.ipynb       the executed notebook (outputs included)
    NN_<stage>.html        an HTML export without code (nbconvert --no-input)
    outputs/<stage>.json   values a stage recorded with :func:`record` (e.g. the model version it trained)
    manifest.json          parameters, git commit, package versions, hashes of the input data, models
                           produced or used, and per stage: start, end, duration, status, error

A failing stage stops the run with a message that points at the executed notebook and the failing cell;
``resume`` restarts from that stage with the same parameters. Nothing from a failed run is promoted: models
are registered unpromoted by the stages, and promoted only when the whole run succeeds (``promote: true``).
Secrets never reach papermill parameters (keys that look like credentials are refused) or run folders.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workbench.config import Settings

__all__ = ["PipelineError", "PipelineSpec", "Stage", "list_runs", "record", "resume_pipeline", "run_pipeline"]

SECRET_KEY = re.compile(r"(api[_-]?key|secret|password|passphrase|token|private[_-]?key)", re.I)
OUTPUTS_ENV = "WORKBENCH_RUN_OUTPUTS"


class PipelineError(RuntimeError):
    pass


@dataclass(frozen=True)
class Stage:
    name: str
    notebook: str
    parameters: dict[str, Any]
    inputs: dict[str, str]  # notebook parameter -> "stage.output"


@dataclass(frozen=True)
class PipelineSpec:
    stages: list[Stage]
    parameters: dict[str, Any]
    promote: bool
    path: Path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PipelineSpec:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise PipelineError(f"{path}: cannot read the pipeline: {e}") from e
        if not isinstance(raw, dict) or not isinstance(raw.get("stages"), list) or not raw["stages"]:
            raise PipelineError(f"{path}: expected a mapping with a non-empty 'stages' list")
        unknown = set(raw) - {"stages", "parameters", "promote"}
        if unknown:
            raise PipelineError(
                f"{path}: unknown key(s) {sorted(unknown)}; keys: stages, parameters, promote"
            )
        stages = []
        for i, s in enumerate(raw["stages"]):
            where = f"{path}: stages[{i}]"
            if not isinstance(s, dict) or "name" not in s or "notebook" not in s:
                raise PipelineError(f"{where}: each stage needs 'name' and 'notebook'")
            bad = set(s) - {"name", "notebook", "parameters", "inputs"}
            if bad:
                raise PipelineError(
                    f"{where} ({s['name']}): unknown key(s) {sorted(bad)}; keys: name, notebook, parameters, inputs"
                )
            nb = (
                (path.parent.parent / s["notebook"])
                if not Path(s["notebook"]).is_absolute()
                else Path(s["notebook"])
            )
            if not nb.is_file():
                raise PipelineError(f"{where} ({s['name']}): notebook {s['notebook']} not found")
            stages.append(
                Stage(str(s["name"]), str(nb), dict(s.get("parameters") or {}), dict(s.get("inputs") or {}))
            )
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise PipelineError(f"{path}: stage names must be unique: {names}")
        for s in stages:
            for param, ref in s.inputs.items():
                src = ref.split(".", 1)[0]
                if src not in names[: names.index(s.name)]:
                    raise PipelineError(f"{path}: stage {s.name}: input {param}={ref} names no earlier stage")
        return cls(stages, dict(raw.get("parameters") or {}), bool(raw.get("promote", False)), path)


def record(key: str, value: Any) -> None:
    """Called from a stage notebook: record an output value for later stages and the run manifest. A no-op
    outside a pipeline run."""
    target = os.environ.get(OUTPUTS_ENV)
    if not target:
        return
    p = Path(target)
    data = json.loads(p.read_text()) if p.is_file() else {}
    data[key] = value
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, p)


# ---------------------------------------------------------------------------------------------- lineage


def _code_version() -> str:
    from workbench.ml.registry import code_version

    return code_version()


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in (
        "workbench",
        "pandas",
        "numpy",
        "duckdb",
        "pyarrow",
        "ccxt",
        "vectorbt",
        "ta-lib",
        "torch",
        "optuna",
        "papermill",
        "scikit-learn",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def _data_hashes(settings: Settings) -> dict[str, Any]:
    """Per stored series: rows, range and a hash of its manifest's part list (changes whenever data does)."""
    from workbench.data.store import Store

    store = Store.from_settings(settings)
    out = {}
    for key in store.series():
        m = store.manifest(key)
        if not m:
            continue
        parts = json.dumps([[p["file"], p["rows"], p["min_ts"], p["max_ts"]] for p in m["parts"]])
        out[str(key)] = {
            "version": m["version"],
            "rows": sum(p["rows"] for p in m["parts"]),
            "sha256": hashlib.sha256(parts.encode()).hexdigest(),
        }
    return out


def _check_params(params: Mapping[str, Any], where: str) -> None:
    for k in params:
        if SECRET_KEY.search(str(k)):
            raise PipelineError(
                f"{where}: parameter {k!r} looks like a credential; secrets never go into notebook parameters"
            )


def _redact(text: str) -> str:
    from workbench.data.exchanges import redact

    return redact(text)


def _write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    tmp = run_dir / f".manifest.{uuid.uuid4().hex[:6]}"
    tmp.write_text(_redact(json.dumps(manifest, indent=1, default=str)))
    os.replace(tmp, run_dir / "manifest.json")


def runs_dir(settings: Settings) -> Path:
    return settings.data_dir / "runs"


def list_runs(settings: Settings) -> list[dict[str, Any]]:
    out = []
    d = runs_dir(settings)
    for m in sorted(d.glob("*/manifest.json")) if d.is_dir() else []:
        try:
            out.append(json.loads(m.read_text()))
        except ValueError:
            continue
    return out


def last_successful_end(settings: Settings) -> str | None:
    done = [r for r in list_runs(settings) if r.get("status") == "succeeded"]
    return max((r["finished"] for r in done), default=None)


def _resolve(params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``@last``: the end time of the last successful run (for scheduled incremental runs)."""
    out = dict(params)
    for k, v in params.items():
        if v == "@last":
            out[k] = last_successful_end(settings) or ""
    return out


# ---------------------------------------------------------------------------------------------- running


def _failing_cell(nb_path: Path) -> dict[str, Any]:
    import nbformat

    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception:
        return {}
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []) if c.get("cell_type") == "code" else []:
            if o.get("output_type") == "error":
                return {
                    "cell": i,
                    "ename": o.get("ename"),
                    "evalue": _redact(str(o.get("evalue"))[:500]),
                    "source": "".join(c.get("source", ""))[:300],
                }
    return {}


def _export_html(nb_path: Path) -> None:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_filename(str(nb_path))
    tmp = nb_path.with_suffix(".html.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, nb_path.with_suffix(".html"))


@contextlib.contextmanager
def _kernel_env(values: dict[str, str]) -> Iterator[None]:
    """Environment the stage kernels inherit: this run's config, data folder and outputs file."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _execute(
    stage: Stage, params: dict[str, Any], out_nb: Path, env: dict[str, str], kernel: str, timeout: int
) -> None:
    import papermill as pm

    logging.getLogger("papermill").setLevel(logging.WARNING)
    with _kernel_env(env):
        pm.execute_notebook(
            stage.notebook,
            str(out_nb),
            parameters=params,
            kernel_name=kernel,
            cwd=str(Path(stage.notebook).parent),
            progress_bar=False,
            execution_timeout=timeout,
            report_mode=False,
        )


def run_pipeline(
    settings: Settings,
    spec: PipelineSpec,
    *,
    overrides: Mapping[str, Any] | None = None,
    stages: list[str] | None = None,
    run_id: str | None = None,
    kernel: str = "workbench",
    timeout: int = 1800,
    on_stage: Callable[[str, str, float | None], None] | None = None,
    _resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the pipeline (or ``stages`` of it); returns the manifest. Raises PipelineError on a failed stage
    after writing the manifest."""
    overrides = dict(overrides or {})
    _check_params(overrides, "pipeline parameters")
    _check_params(spec.parameters, str(spec.path))
    for s in spec.stages:
        _check_params(s.parameters, f"{spec.path}: stage {s.name}")
    chosen = spec.stages
    if stages:
        unknown = [x for x in stages if x not in [s.name for s in spec.stages]]
        if unknown:
            raise PipelineError(f"unknown stage(s) {unknown}; stages: {[s.name for s in spec.stages]}")
        chosen = [s for s in spec.stages if s.name in stages]
    if _resume is None:
        run_id = run_id or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        run_dir = runs_dir(settings) / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / "outputs").mkdir()
        manifest: dict[str, Any] = {
            "run_id": run_id,
            "pipeline": str(spec.path),
            "status": "running",
            "started": dt.datetime.now(dt.UTC).isoformat(),
            "finished": None,
            "parameters": _resolve({**spec.parameters, **overrides}, settings),
            "git_commit": _code_version(),
            "versions": _versions(),
            "data_before": _data_hashes(settings),
            "stages": {s.name: {"status": "pending", "notebook": s.notebook} for s in chosen},
            "models": {},
            "promoted": None,
        }
    else:
        manifest = _resume
        run_id = manifest["run_id"]
        run_dir = runs_dir(settings) / run_id
        manifest["status"] = "running"
    _write_manifest(run_dir, manifest)
    outputs: dict[str, dict[str, Any]] = {}
    for f in (run_dir / "outputs").glob("*.json"):
        outputs[f.stem] = json.loads(f.read_text())
    for i, stage in enumerate(chosen, 1):
        st = manifest["stages"][stage.name]
        if st["status"] == "succeeded":
            continue
        params = {**manifest["parameters"], **stage.parameters}
        for param, ref in stage.inputs.items():
            src, key = ref.split(".", 1)
            if key not in outputs.get(src, {}):
                raise PipelineError(
                    f"stage {stage.name}: input {param}={ref}: stage {src} recorded no {key!r}"
                )
            params[param] = outputs[src][key]
        # only parameters the notebook declares are injected (papermill would add the rest as new variables)
        params = _declared(stage.notebook, params)
        out_nb = run_dir / f"{i:02d}_{stage.name}.ipynb"
        out_file = run_dir / "outputs" / f"{stage.name}.json"
        st.update(
            status="running",
            started=dt.datetime.now(dt.UTC).isoformat(),
            parameters=params,
            executed=str(out_nb),
        )
        _write_manifest(run_dir, manifest)
        if on_stage:
            on_stage(stage.name, "running", None)
        t0 = time.perf_counter()
        try:
            env = {
                OUTPUTS_ENV: str(out_file),
                "WORKBENCH_HOME": str(settings.data_dir),
                # figures as plotly's mimetype (JupyterLab) AND as HTML with plotly.js embedded once per
                # notebook, so the nbconvert exports show them, offline
                "PLOTLY_RENDERER": os.environ.get("PLOTLY_RENDERER", "plotly_mimetype+notebook"),
            }
            if settings.config_dir is not None:
                env["WORKBENCH_CONFIG"] = str(settings.config_dir)
            _execute(stage, params, out_nb, env, kernel, timeout)
        except Exception as e:  # papermill raises PapermillExecutionError; anything else is a failure too
            st.update(
                status="failed",
                finished=dt.datetime.now(dt.UTC).isoformat(),
                seconds=round(time.perf_counter() - t0, 2),
                error={"type": type(e).__name__, "message": _redact(str(e))[:2000], **_failing_cell(out_nb)},
            )
            manifest.update(status="failed", finished=dt.datetime.now(dt.UTC).isoformat())
            if out_nb.exists():
                _export_html(out_nb)
            _write_manifest(run_dir, manifest)
            if on_stage:
                on_stage(stage.name, "failed", time.perf_counter() - t0)
            cell = st["error"].get("cell")
            raise PipelineError(
                f"stage {stage.name} failed: {st['error'].get('ename') or type(e).__name__}: "
                f"{st['error'].get('evalue') or ''}\n  executed notebook: {out_nb}"
                + (f" (cell {cell} of the executed notebook)" if cell is not None else "")
                + f"\n  resume with: workbench pipeline resume {run_id}"
            ) from None
        _export_html(out_nb)
        outputs[stage.name] = json.loads(out_file.read_text()) if out_file.is_file() else {}
        for k, v in outputs[stage.name].items():
            if k.startswith("model"):
                manifest["models"][f"{stage.name}.{k}"] = v
        st.update(
            status="succeeded",
            finished=dt.datetime.now(dt.UTC).isoformat(),
            seconds=round(time.perf_counter() - t0, 2),
            outputs=outputs[stage.name],
        )
        _write_manifest(run_dir, manifest)
        if on_stage:
            on_stage(stage.name, "succeeded", time.perf_counter() - t0)
    manifest["status"] = "succeeded"
    manifest["finished"] = dt.datetime.now(dt.UTC).isoformat()
    manifest["data_after"] = _data_hashes(settings)
    if spec.promote:
        manifest["promoted"] = _promote(settings, manifest)
    _write_manifest(run_dir, manifest)
    return manifest


def _declared(notebook: str, params: dict[str, Any]) -> dict[str, Any]:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    src = "".join(
        "".join(c.get("source", ""))
        for c in nb.cells
        if "parameters" in c.get("metadata", {}).get("tags", [])
    )
    names = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[:=]", src, flags=re.M))
    return {k: v for k, v in params.items() if k in names}


def _promote(settings: Settings, manifest: dict[str, Any]) -> list[str]:
    """Promote every model a successful run registered (recorded as ``model_name`` / ``model_version``)."""
    from workbench.ml.registry import Registry

    reg = Registry(settings.data_dir / settings.ml.registry)
    done = []
    for stage in manifest["stages"].values():
        o = stage.get("outputs") or {}
        if "model_name" in o and "model_version" in o:
            reg.promote(o["model_name"], o["model_version"])
            done.append(f"{o['model_name']} {o['model_version']}")
    return done


def resume_pipeline(settings: Settings, spec: PipelineSpec, run_id: str, **kw: Any) -> dict[str, Any]:
    path = runs_dir(settings) / run_id / "manifest.json"
    if not path.is_file():
        known = [r["run_id"] for r in list_runs(settings)]
        raise PipelineError(f"no run {run_id!r}" + (f"; runs: {', '.join(known[-5:])}" if known else ""))
    manifest = json.loads(path.read_text())
    if manifest["status"] == "succeeded":
        raise PipelineError(f"run {run_id} already succeeded; nothing to resume")
    stages = list(manifest["stages"])
    return run_pipeline(settings, spec, stages=stages, _resume=manifest, **kw)


def schedule_lines(settings: Settings, cron: str, pipeline: str, python_bin: str) -> dict[str, str]:
    """A crontab line and a systemd service + timer for scheduled runs (``since`` = the last run's end)."""
    root = settings.root
    cmd = f"cd {root} && {python_bin} -m workbench.cli pipeline run --config {settings.config_dir or root / 'config'} --pipeline {pipeline} -p since=@last"
    log = settings.data_dir / "runs" / "scheduled.log"
    return {
        "cron": f"{cron} {cmd} >> {log} 2>&1",
        "service": "[Unit]\nDescription=workbench pipeline run\n\n[Service]\nType=oneshot\n"
        f"WorkingDirectory={root}\nExecStart=/bin/sh -c '{cmd}'\n",
        "timer": "[Unit]\nDescription=workbench pipeline schedule\n\n[Timer]\n"
        f"OnCalendar={_cron_to_calendar(cron)}\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n",
    }


def _cron_to_calendar(cron: str) -> str:
    parts = cron.split()
    if len(parts) != 5:
        raise PipelineError(f"cron expression {cron!r}: expected 5 fields (minute hour day month weekday)")
    minute, hour, day, month, _ = parts

    def f(x: str, w: int) -> str:
        return "*" if x == "*" else (x.replace("*/", "0/") if x.startswith("*/") else x.zfill(w))

    return f"*-{f(month, 2)}-{f(day, 2)} {f(hour, 2)}:{f(minute, 2)}:00"
