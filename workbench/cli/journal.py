"""``workbench journal ...``: read a trading session's journal (no exchange connection, no engine needed)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

journal_app = typer.Typer(help="Read a trading session's journal.", no_args_is_help=True)


@journal_app.command("export")
def export(
    session: Annotated[str, typer.Option("--session", help="The session's name.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The JSON file to write ('-': stdout).")],
) -> None:
    """Write the session's orders, fills, risk events, equity and positions as one JSON object."""
    from workbench.cli.app import _errors, err, settings
    from workbench.trading.journal import Journal, JournalError, journal_path

    with _errors():
        path = journal_path(settings().data_dir, session)
        if not path.is_file():
            raise JournalError(f"no journal for session {session!r} (looked for {path})")
        with Journal(path, readonly=True) as j:
            payload = j.export()
        text = json.dumps(payload, indent=1, allow_nan=False)
        if str(out_file) == "-":
            typer.echo(text)
            return
        out_file.parent.mkdir(parents=True, exist_ok=True)
        # atomic: a reader of FILE never sees half of it
        fd, tmp = tempfile.mkstemp(dir=out_file.parent, prefix=f".{out_file.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, out_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        err.print(
            f"{out_file}: {len(payload['orders'])} orders, {len(payload['fills'])} fills, "
            f"{len(payload['risk_events'])} risk events, {len(payload['equity'])} equity samples",
            highlight=False,
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(journal_app, name="journal")
