"""Strategies written by the user, loaded from files: ``--strategy`` takes any of

* ``path/to/file.py:ClassName``: that class of that file (the path absolute or relative to the current folder);
* ``path/to/file.py``: the one Strategy subclass defined in that file;
* ``NAME``: a built-in strategy, or the strategy whose ``name`` is NAME in one of the search folders
  (config ``strategies.paths``, default ``<data>/strategies/``; every ``*.py`` file there whose name does not
  start with ``_``).

A user's class needs no ``@register``: it subclasses :class:`~workbench.strategies.base.Strategy`, sets
``name`` and ``Params`` and implements ``target``. Errors are :class:`StrategyLoadError` and name the file
(``file:line`` for a syntax error), the class, or both files of a name defined twice; a name may be defined
only once across the built-ins and the search folders.

Each file is imported under a module name derived from its absolute path (``workbench.strategies._user.<hex>``)
with ``importlib``; a finder on ``sys.meta_path`` turns that name back into the file, so a class pickled
here (by reference, as multiprocessing, Dask and Optuna workers do) is unpickled in a fresh process by
importing the same file again.
"""

from __future__ import annotations

import difflib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import sys
import traceback
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.strategies.base import ParamError, Params, Strategy, _registered

if TYPE_CHECKING:
    from workbench.config import Settings

__all__ = [
    "StrategyLoadError",
    "discover",
    "load_file",
    "load_strategy",
    "search_paths",
    "strategy_source",
]

PACKAGE = "workbench.strategies._user"


class StrategyLoadError(ParamError):
    """A user strategy cannot be loaded; the message names the file and, where it applies, the class or line."""


# ------------------------------------------------------------------------------------------ modules


def _module_name(path: Path) -> str:
    return f"{PACKAGE}.f{str(path).encode('utf-8').hex()}"


def _path_of(module_name: str) -> Path | None:
    tail = module_name[len(PACKAGE) + 1 :] if module_name.startswith(PACKAGE + ".") else ""
    if not tail.startswith("f") or "." in tail:
        return None
    try:
        return Path(bytes.fromhex(tail[1:]).decode("utf-8"))
    except ValueError:
        return None


class _Loader(importlib.machinery.SourceFileLoader):
    """Runs a user's file and records its signature (mtime, size): an unchanged file is not run again."""

    def exec_module(self, module: types.ModuleType) -> None:
        sig = _signature(Path(self.path))
        super().exec_module(module)
        module.__workbench_signature__ = sig  # type: ignore[attr-defined]


def _spec(name: str, path: Path) -> importlib.machinery.ModuleSpec | None:
    return importlib.util.spec_from_file_location(name, path, loader=_Loader(name, str(path)))


class _UserFinder(importlib.abc.MetaPathFinder):
    """Imports ``workbench.strategies._user`` (an empty package) and its children, the user's files."""

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname == PACKAGE:
            return importlib.machinery.ModuleSpec(fullname, None, is_package=True)
        file = _path_of(fullname)
        if file is None:
            return None
        return _spec(fullname, file)


if not any(isinstance(f, _UserFinder) for f in sys.meta_path):
    sys.meta_path.append(_UserFinder())


def _signature(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _error_line(e: BaseException, path: Path) -> str:
    """``file:line`` of the innermost frame of the user's file in ``e``'s traceback (else just the file)."""
    line = None
    for fr in traceback.extract_tb(e.__traceback__):
        if Path(fr.filename) == path:
            line = fr.lineno
    return f"{path}:{line}" if line else str(path)


def _import(path: Path) -> types.ModuleType:
    """Import (or reuse, if unchanged since) the user's file ``path`` (absolute, resolved)."""
    name = _module_name(path)
    mod = sys.modules.get(name)
    if mod is not None and getattr(mod, "__workbench_signature__", None) == _signature(path):
        return mod
    importlib.import_module(PACKAGE)
    spec = _spec(name, path)
    if spec is None or spec.loader is None:
        raise StrategyLoadError(f"{path}: cannot be imported as Python")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # before it runs: dataclasses, pickling and typing look the module up
    try:
        spec.loader.exec_module(mod)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        where = f"{e.filename or path}:{e.lineno}" if e.lineno else str(path)
        raise StrategyLoadError(f"{where}: syntax error: {e.msg}") from None
    except Exception as e:
        sys.modules.pop(name, None)
        raise StrategyLoadError(
            f"{_error_line(e, path)}: error while importing the strategy file: {type(e).__name__}: {e}"
        ) from e
    return mod


def _strategies_in(mod: types.ModuleType) -> list[type[Strategy]]:
    """The concrete Strategy subclasses defined in ``mod`` (not the ones it imports), in file order."""
    return [
        v
        for v in vars(mod).values()
        if inspect.isclass(v)
        and issubclass(v, Strategy)
        and v.__module__ == mod.__name__
        and not inspect.isabstract(v)
    ]


def _checked(cls: type[Strategy], path: Path) -> type[Strategy]:
    where = f"{path}: class {cls.__name__}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise StrategyLoadError(f'{where}: set a class attribute `name = "..."` (the name to run it by)')
    params = getattr(cls, "Params", None)
    if not (inspect.isclass(params) and issubclass(params, Params)):
        raise StrategyLoadError(
            f"{where}: needs a nested `class Params(Params)` (from workbench.strategies import Params), "
            "empty if the strategy has no parameters"
        )
    return cls


# ------------------------------------------------------------------------------------------ public


def load_file(path: str | Path, class_name: str | None = None) -> type[Strategy]:
    """The strategy class ``class_name`` of the file ``path`` (or its only Strategy subclass)."""
    p = Path(path).expanduser()
    p = (p if p.is_absolute() else Path.cwd() / p).resolve()
    if not p.is_file():
        raise StrategyLoadError(f"strategy file not found: {p}")
    mod = _import(p)
    found = _strategies_in(mod)
    if class_name is None:
        if len(found) != 1:
            raise StrategyLoadError(
                f"{p}: "
                + (
                    "defines no Strategy subclass"
                    if not found
                    else f"defines {len(found)} strategies ({', '.join(c.__name__ for c in found)}); "
                    f"choose one with {p.name}:ClassName"
                )
            )
        return _checked(found[0], p)
    obj = getattr(mod, class_name, None)
    if obj is None:
        classes = [n for n, v in vars(mod).items() if inspect.isclass(v) and v.__module__ == mod.__name__]
        hint = difflib.get_close_matches(class_name, classes, n=1, cutoff=0.5)
        raise StrategyLoadError(
            f"{p}: no class {class_name!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; strategies in the file: {', '.join(c.__name__ for c in found) or 'none'}"
        )
    if not (inspect.isclass(obj) and issubclass(obj, Strategy)):
        what = "a class" if inspect.isclass(obj) else f"a {type(obj).__name__}"
        raise StrategyLoadError(
            f"{p}: {class_name!r} is {what} but not a Strategy subclass "
            "(subclass workbench.strategies.Strategy)"
        )
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise StrategyLoadError(f"{p}: class {class_name} is abstract (implement {missing})")
    return _checked(obj, p)


def search_paths(settings: Settings) -> list[Path]:
    """The folders of config ``strategies.paths``: ``{data}`` is the data folder, relative paths are relative
    to the project root."""
    return settings.strategy_paths


def discover(paths: Iterable[str | Path]) -> dict[str, tuple[type[Strategy], Path]]:
    """Every strategy of the search folders: ``{name: (class, file)}``. A name defined twice (in two files, or
    twice in one) is an error naming both places; so is a folder file shadowing a built-in."""
    found: dict[str, tuple[type[Strategy], Path]] = {}
    builtins = _registered()
    files = dict.fromkeys(
        f.resolve()
        for d in map(Path, paths)
        if d.is_dir()
        for f in sorted(d.glob("*.py"))
        if not f.name.startswith("_")
    )  # a folder listed twice is read once
    for f in files:
        if f.is_file():
            for cls in _strategies_in(_import(f)):
                _checked(cls, f)
                if cls.name in builtins and builtins[cls.name] is not cls:
                    raise StrategyLoadError(
                        f"strategy name {cls.name!r} is defined twice: by {f} (class {cls.__name__}) and by "
                        f"{builtins[cls.name].__module__}.{builtins[cls.name].__name__} (built-in or "
                        "registered); rename yours"
                    )
                if cls.name in found:
                    other, where = found[cls.name]
                    raise StrategyLoadError(
                        f"strategy name {cls.name!r} is defined twice: in {where} (class {other.__name__}) "
                        f"and in {f} (class {cls.__name__}); rename one, or run it as FILE.py:CLASS"
                    )
                found[cls.name] = (cls, f)
    return found


def _split(spec: str) -> tuple[str, str | None]:
    """``file.py:Class`` -> (file.py, Class); ``file.py`` -> (file.py, None)."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail and not tail.endswith(".py") and "/" not in tail and "\\" not in tail:
        return head, tail
    return spec, None


def load_strategy(spec: str, paths: Sequence[str | Path] = ()) -> type[Strategy]:
    """Resolve ``--strategy``: a file spec, a built-in name or a name from the search folders ``paths``."""
    spec = spec.strip()
    if not spec:
        raise StrategyLoadError("empty strategy name")
    file, cls_name = _split(spec)
    if file.endswith(".py") or "/" in file or "\\" in file:
        return load_file(file, cls_name)
    user = discover(paths)
    builtins = _registered()
    if spec in builtins:
        return builtins[spec]
    if spec in user:
        return user[spec][0]
    names = sorted({*builtins, *user})
    hint = difflib.get_close_matches(spec, names, n=1, cutoff=0.5)
    searched = ", ".join(f"{p}{'' if Path(p).is_dir() else ' (missing)'}" for p in paths) or "none"
    raise ParamError(
        f"unknown strategy {spec!r}"
        + (f" (did you mean {hint[0]!r}?)" if hint else "")
        + f"; strategies: {', '.join(names)}; strategy folders searched: {searched}; "
        "or give a file: --strategy path/to/file.py:ClassName"
    )


def strategy_source(cls: type[Strategy]) -> str:
    """Where a strategy class comes from: ``built-in`` or its file."""
    f = _path_of(cls.__module__)
    return str(f) if f is not None else "built-in"
