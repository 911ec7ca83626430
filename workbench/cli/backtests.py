"""``workbench backtests ls|show|rm``: the results that ``backtest`` and ``sweep`` keep under
``<data>/backtests/<id>/`` (:mod:`workbench.backtest.results`), and the helpers that store them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
import pandas as pd
import typer
from rich.markup import escape

from workbench.backtest.results import (
    StoredResult,
    list_results,
    load_result,
    remove_result,
    results_dir,
    store_backtest,
    store_sweep,
)

backtests_app = typer.Typer(
    help="Stored backtest and sweep results (<data>/backtests/<id>/): list, show, remove.",
    no_args_is_help=True,
)

_HEADLINE = ("total_return", "sharpe", "max_drawdown", "n_trades")


def _root() -> Path:
    from workbench.cli.app import settings

    return results_dir(settings().data_dir)


def _options() -> dict[str, Any]:
    """The command's options as parsed (what produced the result)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    return {"command": ctx.command_path.split(" ", 1)[-1], **{k: v for k, v in ctx.params.items()}}


def save_backtest(res: Any, bh: dict[str, float], candles: Any) -> StoredResult:
    """Store a backtest: its JSON (metrics, equity, trades, fills, buy and hold) and its HTML report."""
    return store_backtest(_root(), res, bh, candles, command=_command(), background=True)


def save_sweep(
    res: Any,
    bh: dict[str, float],
    benchmark: str,
    *,
    exchange: str,
    symbols: list[str],
    timeframe: str,
    top: int,
) -> StoredResult:
    """Store a sweep: every combination's metrics, the best one, buy and hold, and the heatmap report."""
    return store_sweep(
        _root(),
        res,
        bh,
        benchmark,
        exchange=exchange,
        symbols=symbols,
        timeframe=timeframe,
        top=top,
        command=_command(),
        background=True,
    )


def _command() -> list[str]:
    opts = _options()
    cmd = [f"workbench {opts.pop('command', '')}".strip()]
    for k, v in opts.items():
        if v is None or v is False or v == []:
            continue
        cmd.append(f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}"))
    return cmd


def register(app: typer.Typer) -> None:
    app.add_typer(backtests_app, name="backtests")


@backtests_app.command("ls")
def backtests_ls(
    json_out: Annotated[bool, typer.Option("--json", help="Print the list as JSON (raw numbers).")] = False,
) -> None:
    """The stored results, oldest first: id, kind, strategy, symbols, period and headline metrics."""
    import json

    from workbench.cli.app import _errors, _print_frame, out
    from workbench.metricdefs import format_metric, quote_currency

    with _errors():
        items = list_results(_root())
        if json_out:
            rows = [{"id": r.id, "kind": r.kind, "path": str(r.path), **r.summary} for r in items]
            out.print_json(json.dumps(rows, default=str))
            return
        rows = []
        for r in items:
            sm = r.summary
            m = sm.get("metrics") or {}
            syms = sm.get("symbols") or []
            cur = quote_currency(syms)
            period = (
                f"{str(sm.get('start', ''))[:10]} .. {str(sm.get('end', ''))[:10]}" if sm.get("start") else ""
            )
            rows.append(
                {
                    "id": r.id,
                    "kind": r.kind if "error" not in r.data else "unreadable",
                    "strategy": sm.get("strategy", ""),
                    "symbols": ", ".join(syms),
                    "tf": sm.get("timeframe") or "",
                    "period": period,
                    **{k: format_metric(k, m.get(k), cur) for k in _HEADLINE},
                }
            )
        _print_frame(pd.DataFrame(rows), title=f"stored results in {_root()}")


@backtests_app.command("show")
def backtests_show(
    result_id: Annotated[str, typer.Argument(metavar="ID", help="An id, a unique prefix of one, or 'last'.")],
) -> None:
    """A stored result: what ran, its metrics beside buy and hold (formatted), and the path of its report."""
    from workbench.cli.app import _errors, _print_frame, out
    from workbench.cli.output import compare_table, format_frame_values
    from workbench.metricdefs import METRIC_KEYS, quote_currency

    with _errors():
        r = load_result(_root(), result_id)
        d, sm = r.data, r.summary
        syms = sm.get("symbols") or []
        out.print(f"{r.id} ({r.kind}), created {d.get('created', '?')}", highlight=False)
        if "error" in d:
            raise ValueError(d["error"])
        out.print(
            f"{sm.get('strategy')} {sm.get('params')} on {sm.get('exchange')} {', '.join(syms)} "
            f"{sm.get('timeframe')}" + (f", {sm.get('start')} .. {sm.get('end')}" if sm.get("start") else ""),
            highlight=False,
            soft_wrap=True,
        )
        if d.get("command"):
            out.print(" ".join(map(str, d["command"])), highlight=False, soft_wrap=True, markup=False)
        bench = sm.get("benchmark")
        if r.kind == "backtest":
            out.print(
                compare_table(
                    {"strategy": d.get("metrics") or {}, "buy and hold": d.get("buy_and_hold") or {}},
                    syms,
                    title=f"metrics; benchmark: {bench} (no costs)",
                    beta_of=bench,
                )
            )
            out.print(
                f"{len(d.get('trades') or [])} trades, {len(d.get('fills') or [])} fills", highlight=False
            )
        else:
            best = {k: v for k, v in (d.get("best") or {}).items() if k != "params"}
            out.print(
                f"{d.get('n_valid')} valid of {d.get('n_combinations')} combinations, ranked by {d.get('metric')}"
            )
            top = pd.DataFrame((d.get("results") or [])[:10])
            _print_frame(format_frame_values(top, quote_currency(syms)), title="top 10")
            out.print(
                compare_table(
                    {"best": best, "buy and hold": d.get("buy_and_hold") or {}},
                    syms,
                    title=f"best combination {(d.get('best') or {}).get('params')} beside {bench} (no costs)",
                    keys=[*METRIC_KEYS, "final_equity", "dsr_normal_approx"],
                )
            )
        out.print(f"result: {r.path / 'result.json'}", highlight=False, soft_wrap=True)
        report = r.wait_report()  # a report still being written by the command's background process
        if report is not None:
            where = str(report)
        elif r.report_error:
            where = f"(not written: {r.report_error})"
        else:
            where = "(still being written)" if r.report_pending else "(none)"
        out.print(f"report: {where}", highlight=False, soft_wrap=True)


@backtests_app.command("rm")
def backtests_rm(
    result_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Ids or unique prefixes.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete stored results (asks first unless --yes)."""
    from workbench.backtest.results import resolve
    from workbench.cli.app import _errors, err, out

    with _errors():
        root = _root()
        # every id is resolved before anything is deleted
        ids = list(dict.fromkeys(resolve(root, ref) for ref in result_ids))
        question = f"delete {len(ids)} stored result(s): {', '.join(ids)}?"
        if not yes and not typer.confirm(question, default=False):
            err.print("nothing deleted", highlight=False)
            raise typer.Exit(1)
        for rid in ids:
            remove_result(root, rid)
            out.print(f"deleted {escape(rid)}", highlight=False)
