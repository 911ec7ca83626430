"""Typed, frozen config: unknown keys name the file and key with a hint; env overrides; secrets refused;
overlay files; exchange ids, duplicate keys and near-miss variable names; effective values shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from workbench.config import ConfigError, ConfigWarning, load_settings
from workbench.data.exchanges import ExchangeSetupError, exchange_ids, make_exchange

ROOT = Path(__file__).resolve().parent.parent


def cfg(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "config"
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def test_project_config_loads_and_is_frozen() -> None:
    s = load_settings(ROOT / "config", env={})
    assert s.collect.page_limit == 1000
    assert s.trading.mode == "paper" and s.ml.torch_threads == 1
    assert s.data_dir == ROOT / "data"
    with pytest.raises(ValidationError):
        s.collect.page_limit = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        (
            "workbench.yml",
            "collect:\n  page_limt: 5\n",
            "collect.page_limt: unknown key (did you mean 'collect.page_limit'?)",
        ),
        ("workbench.yml", "colect: {}\n", "colect: unknown key (did you mean 'collect'?)"),
        (
            "workbench.yml",
            "exchanges:\n  binance:\n    sandbx: true\n",
            "exchanges.binance.sandbx: unknown key (did you mean 'exchanges.binance.sandbox'?)",
        ),
        (
            "workbench.yml",
            "collect:\n  page_limit: many\n",
            "collect.page_limit: Input should be a valid integer",
        ),
        (
            "trading.yml",
            "risk:\n  max_drawdwn: 0.1\n",
            "risk.max_drawdwn: unknown key (did you mean 'risk.max_drawdown'?)",
        ),
        ("ml.yml", "device: tpu\n", "device: Input should be 'cpu', 'cuda' or 'auto'"),
        ("security.yml", "master_key: x\n", "master_key: unknown key (did you mean 'master_key_env'?)"),
        ("workbench.yml", "- a\n- b\n", "the top level must be a mapping"),
        ("workbench.yml", "collect: [\n", "invalid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, file, text, expected) -> None:
    d = cfg(tmp_path, {file: text})
    with pytest.raises(ConfigError) as e:
        load_settings(d, env={})
    assert str(d / file) in str(e.value)
    assert expected in str(e.value)


def test_env_overrides(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "collect:\n  page_limit: 10\n"})
    env = {
        "WORKBENCH__COLLECT__PAGE_LIMIT": "20",
        "WORKBENCH__TRADING__RISK__MAX_DRAWDOWN": "0.1",
        "WORKBENCH__EXCHANGES__KRAKEN__CCXT__TIMEOUT": "1234",
        "WORKBENCH_HOME": str(tmp_path / "home"),
    }
    s = load_settings(d, env=env)
    assert s.collect.page_limit == 20
    assert s.trading.risk.max_drawdown == 0.1
    assert s.exchange("kraken").ccxt == {"timeout": 1234}
    assert s.data_dir == (tmp_path / "home").resolve()
    with pytest.raises(
        ConfigError,
        match=r"environment variable WORKBENCH__COLLECT__PAGE_LIMT: collect.page_limt: unknown key \(did you mean 'collect.page_limit'\?\)",
    ):
        load_settings(d, env={"WORKBENCH__COLLECT__PAGE_LIMT": "1"})
    with pytest.raises(ConfigError, match=r"unknown section 'COLECT' \(did you mean 'collect'\?\)"):
        load_settings(d, env={"WORKBENCH__COLECT__PAGE_LIMIT": "1"})
    with pytest.raises(
        ConfigError, match=r"\(closest valid variable: WORKBENCH__TRADING__RISK__MAX_DRAWDOWN\)$"
    ):
        load_settings(d, env={"WORKBENCH__TRADNG__RISK__MAX_DRAWDWN": "0.1"})


def test_relative_data_path_resolves_against_project_root(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "paths:\n  data: store-here\n"})
    assert load_settings(d, env={}).data_dir == tmp_path / "store-here"
    assert load_settings(d / "workbench.yml", env={}).config_dir == d


def test_credentials_are_refused_in_files_and_read_from_env(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "exchanges:\n  binance:\n    ccxt:\n      apiKey: abc\n"})
    with pytest.raises(ConfigError, match="credential: API keys come only from the environment"):
        load_settings(d, env={})
    s = load_settings(cfg(tmp_path, {"workbench.yml": "{}\n"}), env={})
    ex = make_exchange(
        s,
        "binance",
        with_credentials=True,
        env={"WORKBENCH_BINANCE_API_KEY": "k", "WORKBENCH_BINANCE_SECRET": "s"},
    )
    assert ex.apiKey == "k" and ex.secret == "s"
    assert make_exchange(s, "binance").apiKey in (None, "")


def test_ccxt_options_are_checked_and_urls_pointed_elsewhere(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "exchanges:\n  binance:\n    ccxt:\n      timeot: 5\n"})
    with pytest.raises(
        ExchangeSetupError,
        match=r"exchanges.binance.ccxt.timeot: not an option of ccxt.binance \(did you mean 'timeout'\?\)",
    ):
        make_exchange(load_settings(d, env={}), "binance")
    with pytest.raises(ExchangeSetupError, match=r"unknown exchange 'binanse' \(did you mean 'binance'"):
        make_exchange(load_settings(d, env={}), "binanse")
    d = cfg(tmp_path, {"workbench.yml": "exchanges:\n  binance:\n    base_url: http://127.0.0.1:9\n"})
    ex = make_exchange(
        load_settings(d, env={"WORKBENCH__EXCHANGES__BINANCE__CCXT__ENABLERATELIMIT": "false"}), "binance"
    )
    assert ex.enableRateLimit is False
    flat = []

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, str) and "://" in v:
            flat.append(v)

    walk(ex.urls["api"])
    assert flat and all("127.0.0.1:9" in u for u in flat)


# ------------------------------------------------------------------------ the CLI as a user runs it

WB = [sys.executable, "-m", "workbench.cli"]


def wb(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("WORKBENCH")}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [*WB, *args], capture_output=True, text=True, env={**base, **(env or {})}, cwd=cwd, timeout=120
    )


# ------------------------------------------------------------- 13: --config FILE is an overlay, never ignored


def test_config_file_is_an_overlay_on_its_folder(tmp_path) -> None:
    d = cfg(
        tmp_path,
        {
            "workbench.yml": "collect:\n  page_limit: 10\n  max_retries: 2\n",
            "trading.yml": "mode: paper\ninitial_cash: 500\n",
            "live.yml": "collect:\n  max_retries: 3\ntrading:\n  mode: live\nml:\n  seed: 7\n",
        },
    )
    s = load_settings(d / "live.yml", env={})
    assert (s.collect.page_limit, s.collect.max_retries) == (10, 3)  # deep-merged: the folder's key survives
    assert (s.trading.mode, s.trading.initial_cash, s.ml.seed) == ("live", 500, 7)
    assert s.config_dir == d and s.config_file == d / "live.yml" and s.config_source == d / "live.yml"
    assert s.data_dir == tmp_path / "data"
    # the environment still wins over the overlay; WORKBENCH_CONFIG=FILE means the same as --config FILE
    s = load_settings(env={"WORKBENCH_CONFIG": str(d / "live.yml"), "WORKBENCH__TRADING__MODE": "paper"})
    assert (s.trading.mode, s.collect.max_retries) == ("paper", 3)
    # a file named like one of the folder's files is that file, loaded once with its folder
    s = load_settings(d / "trading.yml", env={})
    assert s.config_file is None and s.trading.mode == "paper" and s.collect.page_limit == 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("myhost\n", "the top level must be a mapping of keys, not str"),
        ("collect:\n  page_limt: 5\n", "collect.page_limt: unknown key (did you mean 'collect.page_limit'?)"),
        ("trading:\n  mode: lve\n", "trading.mode: Input should be 'paper' or 'live'"),
        ("stages:\n  - name: collect\n", "stages: unknown key"),  # a pipeline file is not a config file
        ("collect: [\n", "invalid YAML"),
    ],
)
def test_bad_overlay_file_names_the_file_and_key(tmp_path, text, expected) -> None:
    d = cfg(tmp_path, {"workbench.yml": "{}\n", "over.txt": text})
    with pytest.raises(ConfigError) as e:
        load_settings(d / "over.txt", env={})
    assert str(e.value).startswith(f"{d / 'over.txt'}: ")
    assert expected in str(e.value)


def test_config_folder_without_config_files_is_an_error(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty: no config files in this folder"):
        load_settings(tmp_path / "empty", env={})
    with pytest.raises(ConfigError, match=r"nothere: config file or folder not found"):
        load_settings(tmp_path / "nothere", env={})


def test_cli_config_file_overlay_and_failures(tmp_path) -> None:
    d = cfg(
        tmp_path, {"workbench.yml": "collect:\n  page_limit: 10\n", "live.yml": "trading:\n  mode: live\n"}
    )
    p = wb("--config", str(d / "live.yml"), "config", "show")
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    assert shown["trading"]["mode"] == "live" and shown["collect"]["page_limit"] == 10
    # a file that is not a config (like /etc/hostname) fails every command loudly, before it runs
    (tmp_path / "hostname").write_text("myhost\n")
    for args in (["config", "show"], ["data", "ls"], ["pipeline", "ls"]):
        p = wb("--config", str(tmp_path / "hostname"), *args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert f"{tmp_path / 'hostname'}: the top level must be a mapping" in p.stderr
        assert "Traceback" not in p.stderr
    # one meaning of --config: `pipeline run` takes its pipeline file as --pipeline only
    p = wb("--config", str(d), "pipeline", "run", "--config", str(ROOT / "config" / "pipeline.yml"))
    assert p.returncode == 2 and "No such option: --config" in p.stderr


# --------------------------------------------- 14: exchange ids, duplicate keys and near-miss variable names


def test_unknown_exchange_id_is_an_error_with_a_hint(tmp_path) -> None:
    ids = exchange_ids()
    d = cfg(tmp_path, {"workbench.yml": "exchanges:\n  binanace:\n    sandbox: true\n"})
    with pytest.raises(ConfigError) as e:
        load_settings(d, env={}, exchange_ids=ids)
    assert str(e.value).startswith(
        f"{d / 'workbench.yml'}: exchanges.binanace: unknown exchange id 'binanace'"
    )
    assert "did you mean 'binance'" in str(e.value)
    # without the id list (config may not import ccxt) the exchange layer refuses it at use
    with pytest.raises(
        ExchangeSetupError,
        match=r"exchanges.binanace: unknown exchange id 'binanace' \(did you mean 'binance'",
    ):
        make_exchange(load_settings(d, env={}), "binance")

    d = cfg(tmp_path, {"workbench.yml": "{}\n", "trading.yml": "exchange: krakn\n"})
    with pytest.raises(
        ConfigError, match=r"trading.yml: exchange: unknown exchange id 'krakn' \(did you mean 'kraken'"
    ):
        load_settings(d, env={}, exchange_ids=ids)
    (d / "trading.yml").unlink()
    env = {"WORKBENCH__EXCHANGES__BINANACE__SANDBOX": "true"}
    with pytest.raises(
        ConfigError,
        match=r"^environment variable WORKBENCH__EXCHANGES__BINANACE__SANDBOX: exchanges.binanace: unknown exchange id",
    ):
        load_settings(d, env=env, exchange_ids=ids)
    s = load_settings(d, env={"WORKBENCH__EXCHANGES__BINANCE__SANDBOX": "true"}, exchange_ids=ids)
    assert s.exchange("binance").sandbox is True

    p = wb("--config", str(d), "config", "show", env=env)
    assert p.returncode == 2 and "exchanges.binanace: unknown exchange id 'binanace'" in p.stderr


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        ("trading.yml", "mode: paper\nmode: live\n", "mode: duplicate key (line 2; first at line 1)"),
        (
            "workbench.yml",
            "collect:\n  page_limit: 1\n  progress: true\n  page_limit: 2\n",
            "collect.page_limit: duplicate key (line 4; first at line 2)",
        ),
        ("workbench.yml", "collect: {}\nstore: {}\ncollect: {}\n", "collect: duplicate key"),
        ("over.yml", "trading:\n  mode: paper\n  mode: live\n", "trading.mode: duplicate key"),
    ],
)
def test_duplicate_keys_are_errors(tmp_path, file, text, expected) -> None:
    d = cfg(tmp_path, {"workbench.yml": "{}\n", file: text})
    with pytest.raises(ConfigError) as e:
        load_settings(d / file, env={})
    assert f"{d / file}: {expected}" in str(e.value)


def test_duplicate_key_fails_the_cli(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "{}\n", "trading.yml": "mode: paper\nmode: live\n"})
    p = wb("--config", str(d), "config", "show")
    assert p.returncode == 2 and f"{d / 'trading.yml'}: mode: duplicate key" in p.stderr


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("WORKBENCH_COLLECT__PAGE_LIMIT", "WORKBENCH__COLLECT__PAGE_LIMIT"),
        ("WORKBENCH_COLLECT_PAGE_LIMIT", "WORKBENCH__COLLECT__PAGE_LIMIT"),
        ("WORKBENCH_TRADING_RISK_MAX_DRAWDOWN", "WORKBENCH__TRADING__RISK__MAX_DRAWDOWN"),
        ("WORKBENCH_EXCHANGES__BINANCE__SANDBOX", "WORKBENCH__EXCHANGES__BINANCE__SANDBOX"),
        ("WORKBENCH_COLECT__PAGE_LIMT", "WORKBENCH__COLLECT__PAGE_LIMIT"),
        ("WORKBENCHH__ML__SEED", "WORKBENCH__ML__SEED"),
        ("WROKBENCH__TRADING__MODE", "WORKBENCH__TRADING__MODE"),
        ("WORKBENCH_HOM", "WORKBENCH_HOME"),
        ("WORKBENCH_CONFG", "WORKBENCH_CONFIG"),
    ],
)
def test_near_miss_variable_names_warn(tmp_path, name, hint) -> None:
    d = cfg(tmp_path, {"workbench.yml": "{}\n"})
    with pytest.warns(ConfigWarning) as record:
        s = load_settings(d, env={name: "5"})
    assert [str(w.message) for w in record] == [
        f"environment variable {name} is not a setting and is ignored (did you mean {hint}?)"
    ]
    assert s.collect.page_limit == 1000  # ignored, as the warning says


def test_valid_and_unrelated_variables_do_not_warn(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "{}\n"})
    env = {
        "WORKBENCH__COLLECT__PAGE_LIMIT": "7",
        "WORKBENCH_HOME": str(tmp_path / "h"),
        "WORKBENCH_BINANCE_API_KEY": "k",
        "WORKBENCH_BINANCE_SECRET": "s",
        "WORKBENCH_KRAKEN_PASSWORD": "p",
        "WORKBENCH_MASTER_KEY": "m",
        "PATH": "/usr/bin",
        "BENCH_X__Y": "1",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_settings(d, env=env).collect.page_limit == 7


def test_cli_prints_near_miss_warning(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "{}\n"})
    p = wb("--config", str(d), "config", "show", env={"WORKBENCH_COLLECT__PAGE_LIMIT": "12345"})
    assert p.returncode == 0, p.stderr
    assert (
        "config warning: environment variable WORKBENCH_COLLECT__PAGE_LIMIT is not a setting and is ignored "
        "(did you mean WORKBENCH__COLLECT__PAGE_LIMIT?)" in p.stderr
    )
    assert json.loads(p.stdout)["collect"]["page_limit"] == 1000


# ------------------------------------------------- 15: errors show the value, except a credential's


def test_error_shows_an_ordinary_value(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "collect:\n  page_limit: many\n"})
    with pytest.raises(
        ConfigError, match=r"collect.page_limit: Input should be a valid integer.*\(got 'many'\)"
    ):
        load_settings(d, env={})


SECRET_VALUE = "Zq9-sEcReT-0123456789-vAlUe"


@pytest.mark.parametrize(
    ("file", "text", "key"),
    [
        (
            "workbench.yml",
            f"exchanges:\n  binance:\n    ccxt:\n      apiKey: {SECRET_VALUE}\n",
            "exchanges.binance.ccxt.apiKey",
        ),
        (
            "workbench.yml",
            f"exchanges:\n  binance:\n    secret: {SECRET_VALUE}\n",
            "exchanges.binance.secret",
        ),
        (
            "workbench.yml",
            f"exchanges:\n  binance:\n    ccxt:\n      options:\n        privateKey: {SECRET_VALUE}\n",
            "exchanges.binance.ccxt.options.privateKey",
        ),
        ("trading.yml", f"api_secret: {SECRET_VALUE}\n", "api_secret"),
        (
            "over.yml",
            f"exchanges:\n  kraken:\n    ccxt: {{password: {SECRET_VALUE}}}\n",
            "exchanges.kraken.ccxt.password",
        ),
    ],
)
def test_credential_in_a_file_names_key_not_value(tmp_path, file, text, key) -> None:
    d = cfg(tmp_path, {"workbench.yml": "{}\n", file: text})
    with pytest.raises(ConfigError) as e:
        load_settings(d / file, env={})
    msg = str(e.value)
    assert msg.startswith(f"{d / file}: {key}: ") and "is a credential" in msg
    assert "come only from the environment" in msg and "secrets store" in msg
    assert SECRET_VALUE not in msg


@pytest.mark.parametrize(
    "env",
    [
        {"WORKBENCH__EXCHANGES__BINANCE__CCXT__SECRET": SECRET_VALUE},
        {"WORKBENCH__EXCHANGES__BINANCE__CCXT": f"{{apiKey: {SECRET_VALUE}}}"},
    ],
)
def test_credential_in_an_override_names_variable_not_value(tmp_path, env) -> None:
    d = cfg(tmp_path, {"workbench.yml": "{}\n"})
    with pytest.raises(ConfigError) as e:
        load_settings(d, env=env)
    assert str(e.value).startswith(f"environment variable {next(iter(env))}: ")
    assert "is a credential" in str(e.value) and SECRET_VALUE not in str(e.value)


def test_broken_yaml_does_not_quote_the_line(tmp_path) -> None:
    d = cfg(
        tmp_path, {"workbench.yml": f'exchanges:\n  binance:\n    ccxt:\n      apiKey: "{SECRET_VALUE}\n'}
    )
    with pytest.raises(ConfigError) as e:
        load_settings(d, env={})
    assert str(e.value) == (
        f"{d / 'workbench.yml'}: invalid YAML: found unexpected end of stream at line 5, column 1 "
        "(while scanning a quoted scalar at line 4, column 15)"
    )
    assert SECRET_VALUE not in str(e.value)


def test_cli_config_error_is_printed_verbatim(tmp_path) -> None:
    # a folder name that looks like console markup, and a message longer than the console is wide
    (tmp_path / "[bold]").mkdir()
    d = cfg(tmp_path / "[bold]", {"workbench.yml": "collect:\n  page_limit: 0\n"})
    p = wb("--config", str(d), "config", "show")
    assert p.returncode == 2
    assert (
        f"{d / 'workbench.yml'}: collect.page_limit: Input should be greater than or equal to 1 (got 0)"
        in p.stderr
    )


def test_cli_never_echoes_a_credential_from_a_file(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": f"exchanges:\n  binance:\n    ccxt:\n      apiKey: {SECRET_VALUE}\n"})
    p = wb("--config", str(d), "config", "show")
    assert p.returncode == 2
    assert f"{d / 'workbench.yml'}: exchanges.binance.ccxt.apiKey: 'apiKey' is a credential" in p.stderr
    assert SECRET_VALUE not in p.stdout + p.stderr


# ------------------------------------------------------- 16: config show prints the effective values


def test_config_show_resolves_paths_and_placeholders(tmp_path) -> None:
    d = cfg(tmp_path, {"workbench.yml": "paths:\n  data: store-here\n", "ml.yml": "registry: reg\n"})
    data = tmp_path / "store-here"
    e = load_settings(d, env={}).effective()
    assert e["paths"]["data"] == e["data_dir"] == str(data)
    assert e["ml"]["optuna"]["storage"] == f"sqlite:///{data}/optuna.db"
    assert e["ml"]["registry"] == str(data / "reg")
    assert e["security"]["secrets_file"] == str(data / "secrets.enc")
    assert e["paths"]["sample"] == str(tmp_path / "data" / "sample")

    home = tmp_path / "home"
    p = wb("--config", str(d), "--home", str(home), "config", "show")
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    assert shown["paths"]["data"] == str(home)
    assert shown["ml"]["optuna"]["storage"] == f"sqlite:///{home}/optuna.db"
    assert "{data}" not in p.stdout


def test_derived_settings_follow_the_data_folder_unless_absolute(tmp_path) -> None:
    shared = tmp_path / "shared-models"
    d = cfg(
        tmp_path,
        {
            "workbench.yml": "paths:\n  data: store-here\n",
            "ml.yml": f"registry: {shared}\noptuna:\n  storage: 'sqlite:///{{data}}/studies/o.db'\n",
        },
    )
    s = load_settings(d, env={})
    assert s.registry_dir == shared  # absolute: as is, whatever the data folder
    assert s.optuna_storage == f"sqlite:///{tmp_path}/store-here/studies/o.db"
    home = tmp_path / "home"
    moved = load_settings(d, env={"WORKBENCH_HOME": str(home)})
    assert moved.registry_dir == shared and moved.optuna_storage == f"sqlite:///{home}/studies/o.db"
    rel = load_settings(d, env={"WORKBENCH_HOME": str(home), "WORKBENCH__ML__REGISTRY": "reg/prices"})
    assert rel.registry_dir == home / "reg" / "prices"  # relative: under the data folder in effect
    server = load_settings(d, env={"WORKBENCH__ML__OPTUNA__STORAGE": "postgresql://db.example/optuna"})
    assert server.optuna_storage == "postgresql://db.example/optuna"  # no {data}: untouched
