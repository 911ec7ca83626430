"""``workbench news import|collect|ls``: the news kept under ``<data>/news/`` (one Parquet file per source,
:mod:`workbench.data.news`), what the sentiment series beside price on the Models page scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

news_app = typer.Typer(
    help="News kept in the data folder (<data>/news/): import a file, collect a feed, list.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(news_app, name="news")


def _data() -> Path:
    from workbench.cli.app import settings

    return settings().data_dir


def _report(stored: dict[str, tuple[int, int]], read: int) -> None:
    from workbench.cli.app import out
    from workbench.data.news import news_dir

    for src, (added, kept) in stored.items():
        out.print(f"{src}: {added} new item(s), {kept} kept", highlight=False)
    if not stored:
        out.print("no items", highlight=False)
    dup = read - sum(a for a, _ in stored.values())
    if dup > 0:
        out.print(f"{dup} item(s) already kept (same time, text, source and symbol)", highlight=False)
    out.print(f"news: {news_dir(_data())}", highlight=False, soft_wrap=True)


@news_app.command("import")
def news_import(
    file: Annotated[Path, typer.Argument(help="A CSV or JSON Lines file (.csv, .jsonl, optionally .gz).")],
    source: Annotated[
        str | None, typer.Option(help="The source's name (default: a 'source' column, else the file name).")
    ] = None,
    symbol: Annotated[
        str | None, typer.Option("--symbol", "-s", help="The symbol of rows without one (e.g. BTC/USDT).")
    ] = None,
) -> None:
    """Import a news file: columns time (ISO 8601 or epoch ms; no zone = UTC) and text, optionally symbol,
    source and url. Every row is checked first: a bad one is an error naming the row, and nothing is kept."""
    from workbench.cli.app import _errors
    from workbench.data.news import read_news_file, store_news

    with _errors():
        items = read_news_file(file, source=source, symbol=symbol)
        _report(store_news(_data(), items), len(items))


@news_app.command("collect")
def news_collect(
    feed: Annotated[str, typer.Option("--feed", help="An RSS 2.0 or Atom feed: http(s):// or file:// URL.")],
    source: Annotated[str | None, typer.Option(help="The source's name (default: the feed's host).")] = None,
    symbol: Annotated[
        str | None, typer.Option("--symbol", "-s", help="The symbol the feed's items are about.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the feed.")] = 20.0,
) -> None:
    """Fetch a feed's current items and keep the new ones (a feed holds only its latest items: run it
    regularly). Fails at once, in words, when the host cannot be resolved (no network) or the feed is not
    RSS / Atom."""
    from workbench.cli.app import _errors
    from workbench.data.news import RssSource, collect_news, store_news

    with _errors():
        items = collect_news(RssSource(feed, symbol=symbol, source=source, timeout=timeout))
        _report(store_news(_data(), items), len(items))


@news_app.command("ls")
def news_ls(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the list as JSON (times ISO 8601 UTC).")
    ] = False,
) -> None:
    """The kept news: items per source and symbol, the first and the last time (UTC)."""
    import pandas as pd

    from workbench.cli.app import _errors, _print_frame, out
    from workbench.data.news import news_dir, news_summary
    from workbench.types import ms_to_iso

    with _errors():
        df = news_summary(_data())
        rows = [
            {
                "source": r.source,
                "symbol": r.symbol,
                "items": int(r["items"]),
                "first": ms_to_iso(int(r["first"])),
                "last": ms_to_iso(int(r["last"])),
            }
            for _, r in df.iterrows()
        ]
        if json_out:
            out.print_json(json.dumps(rows))
            return
        shown = pd.DataFrame(rows, columns=["source", "symbol", "items", "first", "last"])
        shown["symbol"] = shown["symbol"].fillna("(any)")
        _print_frame(shown, title=f"news in {news_dir(_data())}")
