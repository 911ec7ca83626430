"""Model registry: every trained model is a versioned, immutable artifact with its lineage.

    <data>/models/<name>/v0001/model.pt      weights (state_dict)
                              meta.json     architecture and hyperparameters, feature spec, scaler statistics,
                                            training configuration, data lineage (exchange, symbol, timeframe,
                                            range, rows, sha256 of the training candles), metrics (out of
                                            sample, with baselines), code version, creation time
    <data>/models/<name>/promoted.json      the promoted version and the history of promotions

Sentiment and volatility models live in the same registry, versioned and promoted the same way
(:meth:`Registry.save_artifact`, :meth:`Registry.load_artifact`)::

    <data>/models/<name>/v0001/model.joblib  the fitted model object (joblib pickle: load only trusted files)
                              meta.json     "kind" (sentiment | volatility), the model class and parameters,
                                            data lineage (sha256 of the training data), metrics, code version

``meta.json`` of a price model has no ``kind`` (read as ``price``); :meth:`Registry.load` refuses the other
kinds and :meth:`Registry.load_artifact` refuses price models, naming the kind they hold.

A version folder is written under a temporary name and renamed whole; ``promoted.json`` is replaced
atomically. Strategies and the prediction service load the promoted version.

The registry folder is ``Settings.registry_dir`` (``ml.registry``, relative to the data folder, or absolute):
open it with :func:`open_registry` (or ``Registry(settings.registry_dir)``), never from a path of your own,
so that training, the pipeline's promotion and the notebooks all use the configured one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.config import Settings, load_settings
from workbench.features import Scaler
from workbench.ml.models import build_model
from workbench.types import schema_problem

__all__ = [
    "ARTIFACT_KINDS",
    "LoadedModel",
    "Registry",
    "RegistryError",
    "candles_hash",
    "code_version",
    "open_registry",
    "texts_hash",
]

ARTIFACT_KINDS = ("sentiment", "volatility")
SCHEMA_VERSION = 1  # of meta.json and promoted.json (files written before the field existed are version 1)


class RegistryError(RuntimeError):
    pass


def candles_hash(candles: pd.DataFrame) -> str:
    """sha256 of the candles' bar times and OHLCV values (the exact training data)."""
    h = hashlib.sha256()
    h.update(candles.index.as_unit("ns").asi8.tobytes())
    h.update(
        np.ascontiguousarray(
            candles[["open", "high", "low", "close", "volume"]].to_numpy("float64")
        ).tobytes()
    )
    return h.hexdigest()


def texts_hash(texts: Any, labels: Any = None) -> str:
    """sha256 of training texts (and labels): the lineage of a sentiment model."""
    h = hashlib.sha256()
    for t in texts:
        h.update(str(t).encode("utf-8", "surrogatepass") + b"\x00")
    if labels is not None:
        h.update(np.asarray(list(labels), dtype=np.int64).tobytes())
    return h.hexdigest()


def code_version() -> str:
    """The git commit of the workbench checkout (with '+dirty' for uncommitted changes), else the version."""
    from workbench import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            return commit.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return f"workbench {__version__}"


@dataclass
class LoadedModel:
    name: str
    version: str
    meta: dict[str, Any]
    model: torch.nn.Module
    scaler: Scaler


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps({**data, "schema_version": SCHEMA_VERSION}, indent=1, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    """A registry file (``meta.json``, ``promoted.json``): an error naming the file if it is damaged or was
    written by a newer version of the registry, never a half-read model."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RegistryError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: not a JSON object")
    problem = schema_problem(data.get("schema_version", 1), SCHEMA_VERSION)
    if problem:
        raise RegistryError(f"{path}: {problem}")
    return data


class Registry:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        """The configured registry: ``settings.registry_dir``."""
        return cls(settings.registry_dir)

    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise RegistryError(f"invalid model name {name!r}")
        return self.root / name

    def versions(self, name: str) -> list[str]:
        d = self._dir(name)
        return sorted(p.name for p in d.glob("v[0-9]*") if (p / "meta.json").is_file()) if d.is_dir() else []

    def _commit(self, name: str, tmp: Path, full: dict[str, Any]) -> str:
        """Write ``meta.json`` into ``tmp`` and rename it to the next free version; returns the version."""
        d = self._dir(name)
        for _ in range(100):
            existing = self.versions(name)
            version = f"v{(int(existing[-1][1:]) + 1) if existing else 1:04d}"
            full["version"] = version
            full["schema_version"] = SCHEMA_VERSION
            (tmp / "meta.json").write_text(json.dumps(full, indent=1, default=str))
            try:
                os.rename(tmp, d / version)  # fails if another process took this version
                return version
            except OSError:
                continue
        raise RegistryError(f"{name}: could not allocate a version")

    def _kind_of_name(self, name: str) -> str | None:
        versions = self.versions(name)
        if not versions:
            return None
        return _read_json(self._dir(name) / versions[-1] / "meta.json").get("kind", "price")

    def save_artifact(self, name: str, kind: str, model: Any, meta: dict[str, Any]) -> str:
        """Store a fitted sentiment or volatility model as a new version of ``name``; returns the version.

        ``meta`` should carry ``metrics`` and ``data`` (lineage); ``kind``, ``class``, ``code_version`` and
        ``created`` are added. A name keeps one kind: saving a volatility model under a sentiment name fails.
        """
        import joblib

        if kind not in ARTIFACT_KINDS:
            raise RegistryError(f"unknown model kind {kind!r}: expected one of {', '.join(ARTIFACT_KINDS)}")
        have = self._kind_of_name(name)
        if have is not None and have != kind:
            raise RegistryError(f"{name}: holds {have} models, not {kind}")
        d = self._dir(name)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            joblib.dump(model, tmp / "model.joblib", compress=3)
            full = {
                **meta,
                "name": name,
                "kind": kind,
                "class": f"{type(model).__module__}.{type(model).__qualname__}",
                "arch": meta.get("arch") or getattr(model, "name", type(model).__name__),
                "code_version": meta.get("code_version") or code_version(),
                "created": _now(),
            }
            return self._commit(name, tmp, full)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def load_artifact(
        self, name: str, version: str | None = "promoted", kind: str | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """The model object and meta of a version saved by :meth:`save_artifact` (default: the promoted one,
        else the latest). ``kind``: refuse a version of another kind. Only load registries you trust."""
        import joblib

        version = self.resolve(name, version)
        d = self._dir(name) / version
        meta = _read_json(d / "meta.json")
        have = meta.get("kind", "price")
        if have not in ARTIFACT_KINDS or (kind is not None and have != kind):
            raise RegistryError(
                f"{name} {version}: is a {have} model, not {kind or 'a sentiment or volatility model'}"
            )
        return joblib.load(d / "model.joblib"), meta

    def save(self, name: str, model: torch.nn.Module, scaler: Scaler, meta: dict[str, Any]) -> str:
        """Store a new version; returns its id (``v0001``, ``v0002``, ...)."""
        d = self._dir(name)
        have = self._kind_of_name(name)
        if have not in (None, "price"):
            raise RegistryError(f"{name}: holds {have} models, not price models")
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        torch.save(model.state_dict(), tmp / "model.pt")
        assert scaler.center_ is not None and scaler.scale_ is not None and scaler.columns_ is not None
        full = {
            **meta,
            "name": name,
            "scaler": {
                "method": scaler.method,
                "columns": [str(c) for c in scaler.columns_],
                "center": [float(x) for x in scaler.center_.to_numpy()],
                "scale": [float(x) for x in scaler.scale_.to_numpy()],
            },
            "code_version": meta.get("code_version") or code_version(),
            "created": _now(),
        }
        return self._commit(name, tmp, full)

    def meta(self, name: str, version: str | None = None) -> dict[str, Any]:
        version = self.resolve(name, version)
        return _read_json(self._dir(name) / version / "meta.json")

    def promoted(self, name: str) -> str | None:
        p = self._dir(name) / "promoted.json"
        return _read_json(p)["version"] if p.is_file() else None

    def resolve(self, name: str, version: str | None) -> str:
        versions = self.versions(name)
        if not versions:
            known = self.names()
            raise RegistryError(
                f"no model named {name!r}" + (f"; models: {', '.join(known)}" if known else "")
            )
        if version in (None, "promoted"):
            v = self.promoted(name)
            if v is None:
                if version == "promoted":
                    raise RegistryError(
                        f"{name}: no version is promoted (workbench models promote {name} VERSION)"
                    )
                return versions[-1]
            return v
        if version == "latest":
            return versions[-1]
        if version not in versions:
            raise RegistryError(f"{name}: no version {version!r}; versions: {', '.join(versions)}")
        return version

    def _state(self, name: str) -> dict[str, Any]:
        p = self._dir(name) / "promoted.json"
        return _read_json(p) if p.is_file() else {"version": None, "stack": [], "log": []}

    def promote(self, name: str, version: str) -> None:
        """Make ``version`` the one strategies and the prediction service load."""
        version = self.resolve(name, version)
        state = self._state(name)
        if state["version"] == version:
            return
        state["stack"].append(version)
        state["version"] = version
        state["log"].append({"action": "promote", "version": version, "at": _now()})
        _atomic_json(self._dir(name) / "promoted.json", state)

    def rollback(self, name: str) -> str:
        """Undo the last promotion: the previously promoted version becomes current again; returns it."""
        state = self._state(name)
        if len(state["stack"]) < 2:
            raise RegistryError(f"{name}: no earlier promoted version to roll back to")
        dropped = state["stack"].pop()
        state["version"] = state["stack"][-1]
        state["log"].append(
            {"action": "rollback", "version": state["version"], "from": dropped, "at": _now()}
        )
        _atomic_json(self._dir(name) / "promoted.json", state)
        return state["version"]

    def names(self) -> list[str]:
        return (
            sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
            if self.root.is_dir()
            else []
        )

    def ls(self) -> pd.DataFrame:
        rows = []
        for name in self.names():
            prom = self.promoted(name)
            for v in self.versions(name):
                m = self.meta(name, v)
                main = (m.get("metrics") or {}).get(m.get("arch", ""), {})
                rows.append(
                    {
                        "name": name,
                        "kind": m.get("kind", "price"),
                        "version": v,
                        "promoted": v == prom,
                        "arch": m.get("arch"),
                        "target": m.get("target"),
                        "symbol": m.get("data", {}).get("symbol"),
                        "timeframe": m.get("data", {}).get("timeframe"),
                        "oos_accuracy": main.get("accuracy"),
                        "oos_auc": main.get("auc"),
                        "created": m.get("created"),
                    }
                )
        return pd.DataFrame(
            rows,
            columns=[
                "name",
                "kind",
                "version",
                "promoted",
                "arch",
                "target",
                "symbol",
                "timeframe",
                "oos_accuracy",
                "oos_auc",
                "created",
            ],
        )

    def load(self, name: str, version: str | None = "promoted") -> LoadedModel:
        version = self.resolve(name, version)
        d = self._dir(name) / version
        meta = _read_json(d / "meta.json")
        if meta.get("kind", "price") != "price":
            raise RegistryError(
                f"{name} {version}: is a {meta['kind']} model; load it with Registry.load_artifact"
            )
        model = build_model(meta["arch"], len(meta["feature_names"]), **meta.get("hparams", {}))
        model.load_state_dict(torch.load(d / "model.pt", map_location="cpu", weights_only=True))
        model.eval()
        sc = meta["scaler"]
        scaler = Scaler(sc["method"])
        scaler.columns_ = pd.Index(sc["columns"])
        scaler.center_ = pd.Series(sc["center"], index=scaler.columns_)
        scaler.scale_ = pd.Series(sc["scale"], index=scaler.columns_)
        return LoadedModel(name, version, meta, model, scaler)


def open_registry(config: str | os.PathLike[str] | Settings | None = None) -> Registry:
    """The registry of the configured ``ml.registry`` (``Settings.registry_dir``); ``config`` as for
    :func:`workbench.config.load_settings` (default: ``$WORKBENCH_CONFIG`` or the nearest ``config/``)."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    return Registry.from_settings(settings)
