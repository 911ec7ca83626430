"""The notebook pipeline: stage notebooks executed with papermill into a run folder, with lineage.

``config/pipeline.yml`` lists the stages (notebook, parameters, outputs). ``run`` executes them in order in the
project's Jupyter kernel and writes ``data/runs/<run_id>/``:

    NN_<stage>.ipynb       the executed notebook (outputs included)
    NN_<stage>.html        an HTML export without code (nbconvert --no-input)
    outputs/<stage>.json   values a stage recorded with :func:`record` (e.g. the model version it trained)
    manifest.json          parameters, git commit, package versions, hashes of the input data, models
                           produced or used, and per stage: start, end, duration, status, error

    reports/               files a stage wrote through :func:`artifact_path` (e.g. the backtest report)
    .lock                  flock()ed by the process running or resuming the run (its pid inside)

A run is self-contained: stage kernels run in the run folder, and what they write through
:func:`artifact_path` lands there, so a later run never overwrites what an earlier run's report links to.
Only one process runs a run at a time: the run's ``.lock`` is held with ``flock()`` for the run's lifetime
(the OS frees it when that process dies, even by SIGKILL), and a second ``run``/``resume`` of the same id
fails naming the holder's pid.

Every parameter must be declared by a stage notebook's ``parameters`` cell: an unknown one (from the
pipeline file or ``-p``) is an error with the closest declared names, never silently dropped.

A failing stage stops the run with a message that points at the executed notebook and the failing cell;
``resume`` restarts from that stage with the same parameters. Nothing from a failed run is promoted: models
are registered unpromoted by the stages, and promoted only when the whole run succeeds (``promote: true``)
and only if they do not lose to their own baselines out of sample (:func:`workbench.ml.train.baseline_verdict`;
refusals are recorded in the manifest's ``not_promoted``). :func:`promotion_plan` tells a report stage what
the run will do. Manifests and recorded outputs are strict JSON (NaN and infinities become null).
Secrets never reach papermill parameters (keys that look like credentials are refused) or run folders.

The stage notebooks and the default ``pipeline.yml`` ship with the package (:mod:`workbench.resources`):
a relative notebook path missing from the project is taken from the installed copy.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import difflib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shlex
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workbench.config import Settings
from workbench.resources import bundled
from workbench.types import schema_problem

__all__ = [
    "MANIFEST_SCHEMA_VERSION",
    "PipelineError",
    "PipelineSpec",
    "Stage",
    "artifact_link",
    "artifact_path",
    "default_pipeline_file",
    "list_runs",
    "parse_overrides",
    "promotion_plan",
    "read_manifest",
    "record",
    "resume_pipeline",
    "run_pipeline",
]

SECRET_KEY = re.compile(r"(api[_-]?key|secret|password|passphrase|token|private[_-]?key)", re.I)
OUTPUTS_ENV = "WORKBENCH_RUN_OUTPUTS"
RUN_DIR_ENV = "WORKBENCH_RUN_DIR"
TOKENS = ("@last",)  # parameter values the runner resolves


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
            nb = _notebook(path, str(s["notebook"]))
            if nb is None:
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
        spec = cls(stages, dict(raw.get("parameters") or {}), bool(raw.get("promote", False)), path)
        for s in stages:
            own = declared_parameters(s.notebook)
            for k in [*s.parameters, *s.inputs]:
                if k not in own:
                    raise PipelineError(
                        f"{path}: stage {s.name}: parameter {k!r} is not declared by {s.notebook}"
                        + _hint(k, own)
                    )
        spec.check_parameters(spec.parameters, f"{path}: parameters")
        return spec

    def declared(self) -> set[str]:
        """Every parameter some stage notebook declares."""
        return set().union(*(declared_parameters(s.notebook) for s in self.stages))

    def check_parameters(self, params: Mapping[str, Any], where: str) -> None:
        """Refuse parameters no stage declares (papermill would silently drop them)."""
        known = self.declared()
        for k in params:
            if k not in known:
                raise PipelineError(
                    f"{where}: unknown parameter {k!r}: no stage of {self.path} declares it" + _hint(k, known)
                )


def _hint(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    return (f"; did you mean {' or '.join(map(repr, close))}?" if close else "") + (
        f" (declared: {', '.join(sorted(known))})" if known else ""
    )


def _notebook(pipeline_file: Path, notebook: str) -> Path | None:
    """A stage notebook: absolute, or relative to the project (the folder above the pipeline file's folder),
    else the copy shipped with the package."""
    p = Path(notebook)
    if p.is_absolute():
        return p if p.is_file() else None
    local = pipeline_file.parent.parent / p
    if local.is_file():
        return local
    shipped = bundled(p.as_posix())
    return shipped if shipped is not None and shipped.is_file() else None


def declared_parameters(notebook: str | os.PathLike[str]) -> set[str]:
    """The names a notebook's ``parameters`` cell assigns."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    names: set[str] = set()
    for c in nb.cells:
        if c.get("cell_type") != "code" or "parameters" not in c.get("metadata", {}).get("tags", []):
            continue
        try:
            tree = ast.parse("".join(c.get("source", "")))
        except SyntaxError as e:
            raise PipelineError(f"{notebook}: the parameters cell does not parse: {e}") from None
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def default_pipeline_file(settings: Settings) -> Path:
    """``pipeline.yml`` in the config folder (or the project's ``config/``), else the one shipped with the
    package."""
    local = (settings.config_dir or settings.root / "config") / "pipeline.yml"
    if local.is_file():
        return local
    return bundled("config/pipeline.yml") or local


def parse_overrides(items: Mapping[str, str]) -> dict[str, Any]:
    """``-p key=value`` values: YAML (``20``, ``true``, ``[1, 2]``, ``ETH/USDT``), or a runner token
    (``@last``); a value that is neither is an error naming the parameter."""
    out: dict[str, Any] = {}
    for k, v in items.items():
        if v.startswith("@"):
            if v not in TOKENS:
                raise PipelineError(f"-p {k}={v}: unknown token {v!r}; tokens: {', '.join(TOKENS)}")
            out[k] = v
            continue
        try:
            out[k] = yaml.safe_load(v) if v != "" else ""
        except yaml.YAMLError as e:
            first = str(e).strip().splitlines()[0]
            raise PipelineError(f"-p {k}={v}: not a YAML value ({first}); quote it as a string") from None
    return out


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
    tmp.write_text(_dumps(data))
    os.replace(tmp, p)


def artifact_path(relative: str | os.PathLike[str], default_root: str | os.PathLike[str]) -> Path:
    """Where a stage writes a file it hands on (a report): inside the run folder during a pipeline run, so
    the run keeps its own copy; ``default_root / relative`` outside one. The parent folder is created."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    p = (Path(run_dir) if run_dir else Path(default_root)) / relative
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def artifact_link(path: str | os.PathLike[str], text: str | None = None) -> Any:
    """An HTML link to a file a stage wrote, for a report notebook: relative to the run folder inside a run
    (so the run folder can be moved or archived whole), a file URI outside one."""
    import html

    from IPython.display import HTML

    p = Path(path)
    run_dir = os.environ.get(RUN_DIR_ENV)
    href = (
        p.relative_to(run_dir).as_posix() if run_dir and p.is_relative_to(run_dir) else p.resolve().as_uri()
    )
    return HTML(
        f'<a href="{html.escape(href)}">{html.escape(text or p.name)}</a> <code>{html.escape(str(p))}</code>'
    )


def _finite(v: Any) -> Any:
    """JSON-safe: NaN and infinities (also numpy scalars) become None, recursively."""
    if type(v).__module__ == "numpy" and hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


def _dumps(data: Any) -> str:
    """Strict JSON (what any JSON parser reads): no NaN or Infinity tokens."""
    return json.dumps(_finite(data), indent=1, default=str, allow_nan=False)


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


MANIFEST_SCHEMA_VERSION = 1  # of manifest.json (manifests written before the field existed are version 1)


def read_manifest(path: Path) -> dict[str, Any]:
    """A run's ``manifest.json``; an error naming the file if it is damaged or was written by a newer version."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise PipelineError(f"{path}: unreadable manifest ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: not a run manifest (not a JSON object)")
    problem = schema_problem(data.get("schema_version", 1), MANIFEST_SCHEMA_VERSION)
    if problem:
        raise PipelineError(f"{path}: manifest {problem}")
    return data


def _write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    tmp = run_dir / f".manifest.{uuid.uuid4().hex[:6]}"
    tmp.write_text(_redact(_dumps(manifest)))
    os.replace(tmp, run_dir / "manifest.json")


@contextlib.contextmanager
def _run_lock(run_dir: Path, run_id: str) -> Iterator[None]:
    """Hold the run's ``.lock`` (flock) for the block; fail at once, naming the holder, if another process
    holds it. The OS releases it when the holder exits, however it exits."""
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise PipelineError(
                f"run {run_id} is in progress in another process (pid {holder} holds {path}); "
                "wait for it to finish, or stop that process, before resuming it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def runs_dir(settings: Settings) -> Path:
    return settings.data_dir / "runs"


def list_runs(settings: Settings) -> list[dict[str, Any]]:
    out = []
    d = runs_dir(settings)
    for m in sorted(d.glob("*/manifest.json")) if d.is_dir() else []:
        try:
            out.append(read_manifest(m))
        except PipelineError:
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


_QUIET_KM: Any = None


def stage_kernel_manager() -> type:
    """The kernel manager of the stage kernels: jupyter_client's, without its two spurious messages.

    * ``[IPKernelApp] WARNING | Kernel is running over TCP without encryption``: ipykernel warns unless the
      manager provisions CurveZMQ keys, which jupyter_client does only with ``transport_encryption`` set; the
      kernelspec ``python -m ipykernel install`` writes declares ``supported_encryption: curve``, so "auto"
      encrypts the loopback channels (kept "disabled" where pyzmq lacks curve).
    * ``KeyboardInterrupt caught in kernel`` after a successful stage: a graceful shutdown first *interrupts*
      the kernel (SIGINT), and a kernel busy with its last message logs the interrupt. A stage that finished
      has nothing to interrupt, so this manager does not send it while shutting down (a timeout or a user's
      Ctrl-C still interrupts: ``shutting_down`` is False then).
    """
    global _QUIET_KM
    if _QUIET_KM is None:
        import zmq
        from jupyter_client.manager import AsyncKernelManager
        from traitlets import default

        class QuietKernelManager(AsyncKernelManager):  # type: ignore[misc]
            @default("transport_encryption")
            def _default_encryption(self) -> str:
                return "auto" if zmq.has("curve") else "disabled"

            async def _async_interrupt_kernel(self) -> None:
                if self.shutting_down:
                    return
                await super()._async_interrupt_kernel()

        _QUIET_KM = QuietKernelManager
    return _QUIET_KM


def _execute(
    stage: Stage,
    params: dict[str, Any],
    out_nb: Path,
    env: dict[str, str],
    kernel: str,
    timeout: int,
    cwd: Path,
) -> None:
    import papermill as pm

    logging.getLogger("papermill").setLevel(logging.WARNING)
    with _kernel_env(env):
        pm.execute_notebook(
            stage.notebook,
            str(out_nb),
            parameters=params,
            kernel_name=kernel,
            cwd=str(cwd),
            progress_bar=False,
            execution_timeout=timeout,
            report_mode=False,
            kernel_manager_class=stage_kernel_manager(),
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
) -> dict[str, Any]:
    """Run the pipeline (or ``stages`` of it) as a new run; returns the manifest. Raises PipelineError on a
    failed stage after writing the manifest."""
    overrides = dict(overrides or {})
    _check_params(overrides, "pipeline parameters")
    _check_params(spec.parameters, str(spec.path))
    for s in spec.stages:
        _check_params(s.parameters, f"{spec.path}: stage {s.name}")
    spec.check_parameters(overrides, "pipeline parameters (-p)")
    chosen = _chosen(spec, stages)
    _check_kernel(kernel)
    run_id = run_id or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    run_dir = runs_dir(settings) / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise PipelineError(
            f"run {run_id} exists already ({run_dir}); resume it with: workbench pipeline resume {run_id}"
        ) from None
    with _run_lock(run_dir, run_id):
        (run_dir / "outputs").mkdir()
        manifest: dict[str, Any] = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "run_id": run_id,
            "pipeline": str(spec.path),
            "status": "running",
            "pid": os.getpid(),
            "started": dt.datetime.now(dt.UTC).isoformat(),
            "finished": None,
            "parameters": _resolve({**spec.parameters, **overrides}, settings),
            "overrides": _resolve(overrides, settings),  # -p values: they win over stage parameters too
            "git_commit": _code_version(),
            "versions": _versions(),
            "data_before": _data_hashes(settings),
            "stages": {s.name: {"status": "pending", "notebook": s.notebook} for s in chosen},
            "models": {},
            "promote": spec.promote,
            "promoted": None,
        }
        return _run(settings, chosen, spec, manifest, run_dir, kernel, timeout, on_stage)


def _check_kernel(kernel: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        raise PipelineError(
            f"no Jupyter kernel named {kernel!r} for the stage notebooks; register this environment's Python "
            f"as it: python -m ipykernel install --sys-prefix --name {kernel}"
        ) from None


def _chosen(spec: PipelineSpec, stages: list[str] | None) -> list[Stage]:
    if not stages:
        return spec.stages
    unknown = [x for x in stages if x not in [s.name for s in spec.stages]]
    if unknown:
        raise PipelineError(f"unknown stage(s) {unknown}; stages: {[s.name for s in spec.stages]}")
    return [s for s in spec.stages if s.name in stages]


def _run(
    settings: Settings,
    chosen: list[Stage],
    spec: PipelineSpec,
    manifest: dict[str, Any],
    run_dir: Path,
    kernel: str,
    timeout: int,
    on_stage: Callable[[str, str, float | None], None] | None,
) -> dict[str, Any]:
    """Execute the stages not yet succeeded; the caller holds the run's lock."""
    run_id = manifest["run_id"]
    _write_manifest(run_dir, manifest)
    outputs: dict[str, dict[str, Any]] = {}
    for f in (run_dir / "outputs").glob("*.json"):
        outputs[f.stem] = json.loads(f.read_text())
    for i, stage in enumerate(chosen, 1):
        st = manifest["stages"][stage.name]
        if st["status"] == "succeeded":
            continue
        params = {**manifest["parameters"], **stage.parameters, **manifest.get("overrides", {})}
        for param, ref in stage.inputs.items():
            src, key = ref.split(".", 1)
            if key not in outputs.get(src, {}):
                raise PipelineError(
                    f"stage {stage.name}: input {param}={ref}: stage {src} recorded no {key!r}"
                )
            params[param] = outputs[src][key]
        # each notebook gets the parameters its `parameters` cell declares (every one is declared by some stage)
        own = declared_parameters(stage.notebook)
        params = {k: v for k, v in params.items() if k in own}
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
                RUN_DIR_ENV: str(run_dir),
                "WORKBENCH_HOME": str(settings.data_dir),
                # figures as plotly's mimetype (JupyterLab) AND as HTML with plotly.js embedded once per
                # notebook, so the nbconvert exports show them, offline
                "PLOTLY_RENDERER": os.environ.get("PLOTLY_RENDERER", "plotly_mimetype+notebook"),
            }
            if settings.config_source is not None:
                env["WORKBENCH_CONFIG"] = str(settings.config_source)
            _execute(stage, params, out_nb, env, kernel, timeout, cwd=run_dir)
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
    if manifest.get("promote", spec.promote):
        manifest["promoted"], manifest["not_promoted"] = _promote(settings, manifest)
    _write_manifest(run_dir, manifest)
    return manifest


def _registry(settings: Settings) -> Any:
    from workbench.ml.registry import Registry

    return Registry.from_settings(settings)  # the configured ml.registry, as the stages' open_registry()


def _verdict(reg: Any, name: str, version: str) -> str | None:
    from workbench.ml.train import baseline_verdict

    meta = reg.meta(name, version)
    return baseline_verdict(meta.get("metrics") or {}, str(meta.get("arch")), str(meta.get("target")))


def _promote(settings: Settings, manifest: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """Promote every model a successful run registered (recorded as ``model_name`` / ``model_version``)
    that does not lose to its baselines out of sample; returns (promoted, refused with the reason)."""
    reg = _registry(settings)
    done, refused = [], {}
    for stage in manifest["stages"].values():
        o = stage.get("outputs") or {}
        if "model_name" in o and "model_version" in o:
            label = f"{o['model_name']} {o['model_version']}"
            reason = _verdict(reg, o["model_name"], o["model_version"])
            if reason is None:
                reg.promote(o["model_name"], o["model_version"])
                done.append(label)
            else:
                refused[label] = reason
                logging.getLogger(__name__).warning(
                    "run %s: %s not promoted: %s", manifest["run_id"], label, reason
                )
    return done, refused


def promotion_plan(model_name: str, model_version: str, settings: Settings | None = None) -> dict[str, Any]:
    """For a report stage: what this run does with ``model_name`` ``model_version`` once every stage has
    succeeded (``promote``: will promote / will not, ``reason``), beside what is promoted now. Outside a
    pipeline run it describes the registry only."""
    if settings is None:
        from workbench.config import load_settings

        settings = load_settings()
    reg = _registry(settings)
    current = reg.promoted(model_name) if model_name else None
    plan: dict[str, Any] = {"model": f"{model_name} {model_version}".strip(), "promoted_now": current}
    run_dir = os.environ.get(RUN_DIR_ENV)
    manifest = read_manifest(Path(run_dir) / "manifest.json") if run_dir else None
    if manifest is None:
        plan.update(promote=None, reason="not in a pipeline run")
    elif not manifest.get("promote"):
        plan.update(promote=False, reason="the pipeline does not promote (promote: false)")
    elif not model_name or not model_version:
        plan.update(promote=False, reason="no model recorded by this run")
    else:
        reason = _verdict(reg, model_name, model_version)
        plan.update(
            promote=reason is None,
            reason=reason or "beats or ties every baseline out of sample; promoted when every stage succeeds",
        )
    plan["run"] = manifest["run_id"] if manifest else None
    return plan


def resume_pipeline(
    settings: Settings,
    spec: PipelineSpec | None,
    run_id: str,
    *,
    kernel: str = "workbench",
    timeout: int = 1800,
    on_stage: Callable[[str, str, float | None], None] | None = None,
) -> dict[str, Any]:
    """Rerun a failed (or killed) run from its first stage that did not succeed, with the same parameters.
    Refused while another process runs that run. ``spec`` None: the pipeline file the run was started with."""
    run_dir = runs_dir(settings) / run_id
    path = run_dir / "manifest.json"
    if not path.is_file():
        known = [r["run_id"] for r in list_runs(settings)]
        raise PipelineError(f"no run {run_id!r}" + (f"; runs: {', '.join(known[-5:])}" if known else ""))
    with _run_lock(run_dir, run_id):
        manifest = read_manifest(path)
        if manifest["status"] == "succeeded":
            raise PipelineError(f"run {run_id} already succeeded; nothing to resume")
        spec = spec or PipelineSpec.load(manifest["pipeline"])
        chosen = _chosen(spec, list(manifest["stages"]))
        _check_kernel(kernel)
        manifest.update(status="running", pid=os.getpid())
        return _run(settings, chosen, spec, manifest, run_dir, kernel, timeout, on_stage)


def schedule_lines(
    settings: Settings, cron: str, pipeline: str | os.PathLike[str] | None, python_bin: str
) -> dict[str, str]:
    """A crontab line and a systemd service + timer for scheduled runs (``since`` = the last run's end)."""
    root = settings.root
    file = Path(pipeline).expanduser().resolve() if pipeline else default_pipeline_file(settings)
    PipelineSpec.load(file).check_parameters({"since": None}, f"{file}: scheduled runs pass -p since=@last")
    args = [python_bin, "-m", "workbench.cli"]
    if settings.config_source is not None:
        args += ["--config", str(settings.config_source)]
    args += ["pipeline", "run", "--pipeline", str(file), "-p", "since=@last"]
    cmd = f"cd {shlex.quote(str(root))} && {shlex.join(args)}"
    log = settings.data_dir / "runs" / "scheduled.log"
    return {
        "cron": f"{cron} {cmd} >> {shlex.quote(str(log))} 2>&1",
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
