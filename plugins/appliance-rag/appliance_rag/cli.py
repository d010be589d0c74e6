"""``appliance rag add|list|status|reindex|remove`` (ingestion runs here, with the box's models)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from appliance import ApplianceError, opened


def _run(work: Callable[[Any], Awaitable[Any]]) -> Any:
    from appliance_rag.loaders import LOADERS
    from appliance_rag.service import Collections

    with opened(with_models=True) as appliance:
        try:
            return asyncio.run(work(Collections(appliance, list(LOADERS))))
        except ApplianceError as exc:
            raise click.ClickException(exc.message) from None


@click.group("rag")
def rag_cli() -> None:
    """Collections of local files for answers with citations."""


@rag_cli.command("add")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--glob", "globs", multiple=True, help="Only files matching (e.g. '*.pdf').")
def add(name: str, paths: tuple[Path, ...], globs: tuple[str, ...]) -> None:
    """Create a collection from folders or files and index it now."""

    async def work(rag: Any) -> dict[str, Any]:
        await rag.create(name, [p.resolve() for p in paths], list(globs))
        await rag.tasks[name]
        return dict(await rag.get(name))

    status = _run(work)
    click.echo(
        f"{name}: {status['files']} files, {status['chunks']} chunks, "
        f"{len(status['errors'])} unreadable"
    )
    for error in status["errors"]:
        click.echo(f"  {error['path']}: {error['error']}")


@rag_cli.command("list")
def list_() -> None:
    """Collections with their file and chunk counts."""

    async def work(rag: Any) -> list[dict[str, Any]]:
        return [await rag.get(n) for n in await rag.names()]

    for status in _run(work):
        click.echo(
            f"{status['name']}  {status['status']}  {status['files']} files  "
            f"{status['chunks']} chunks  {', '.join(status['roots'])}"
        )


@rag_cli.command("status")
@click.argument("name")
def status(name: str) -> None:
    """Progress, counts and unreadable files of one collection (JSON)."""

    async def work(rag: Any) -> dict[str, Any]:
        return dict(await rag.get(name))

    click.echo(json.dumps(_run(work), indent=2))


@rag_cli.command("reindex")
@click.argument("name")
def reindex(name: str) -> None:
    """Re-read what changed since the last run (and drop deleted files)."""

    async def work(rag: Any) -> dict[str, Any]:
        await rag.get(name)
        rag.start(name)
        await rag.tasks[name]
        return dict(await rag.get(name))

    result = _run(work)
    click.echo(
        f"{name}: {result['progress'].get('files_total', 0)} changed files re-read; "
        f"{result['files']} files, {result['chunks']} chunks"
    )


@rag_cli.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Delete a collection and its index (the files themselves are untouched)."""

    async def work(rag: Any) -> None:
        await rag.remove(name)

    _run(work)
    click.echo(f"removed {name}")
