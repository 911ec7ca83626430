"""``workbench secrets set|ls|rm``: the encrypted secrets store (see :mod:`workbench.secrets`).

A value is never an argument (``ps`` would show it): ``set NAME`` reads it from a hidden prompt when stdin is
a terminal, else from stdin (one line; the trailing newline is dropped). The master key comes from
``$WORKBENCH_MASTER_KEY`` (``security.master_key_env``) or a passphrase typed at the terminal (asked twice
when the store is created). ``ls`` prints names only.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from workbench.cli.app import _errors, err, out, settings

secrets_app = typer.Typer(
    help="Encrypted API keys and other secrets (values are read from a prompt or stdin, never arguments).",
    no_args_is_help=True,
)

_NAME_HELP = "Secret name: <exchange>.<ccxt field>, e.g. binance.apiKey, binance.secret."


def _read_value(name: str) -> str:
    from workbench.secrets import SecretsError

    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"Value of {name} (hidden): ")
    else:
        value = sys.stdin.read()
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
    if not value:
        raise SecretsError(f"secret {name!r}: no value given (type it at the prompt or pipe it on stdin)")
    if "\n" in value or "\r" in value:
        raise SecretsError(
            f"secret {name!r}: the value on stdin holds more than one line; nothing was written"
        )
    return value


@secrets_app.command("set")
def secrets_set(name: Annotated[str, typer.Argument(help=_NAME_HELP)]) -> None:
    """Store a secret (created or replaced); the value comes from a hidden prompt or stdin."""
    with _errors():
        from workbench.secrets import check_name, open_store

        check_name(name)
        store = open_store(settings(), create=True)
        existed = name in store.names()  # a wrong key fails here, before the value is asked for
        store.set(name, _read_value(name))
        out.print(f"{'replaced' if existed else 'stored'} {name} in {store.path}", highlight=False)


@secrets_app.command("ls")
def secrets_ls() -> None:
    """List the stored names (never the values)."""
    with _errors():
        from workbench.secrets import open_store

        s = settings()
        if not s.secrets_path.exists():
            err.print(f"no secrets store at {s.secrets_path}", highlight=False)
            return
        for name in open_store(s).names():
            out.print(name, highlight=False, markup=False)


@secrets_app.command("rm")
def secrets_rm(name: Annotated[str, typer.Argument(help="Secret name to delete.")]) -> None:
    """Delete a stored secret."""
    with _errors():
        from workbench.secrets import SecretsError, open_store

        s = settings()
        if not s.secrets_path.exists():
            raise SecretsError(f"{s.secrets_path}: no secrets store (nothing to remove)")
        store = open_store(s)
        store.remove(name)
        out.print(f"removed {name} from {store.path}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(secrets_app, name="secrets")
