"""``appliance models list|fetch|import|verify|remove``."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from appliance.cli.common import (
    echo_json,
    echo_table,
    home_option,
    models_dir_option,
    opened,
    settings_from,
)
from appliance.errors import ApplianceError
from appliance.models.catalog import CatalogModel, Quant, load_catalog
from appliance.models.sources import ModelSource, fetch_model, fetchable
from appliance.models.store import ModelStore, sha256_file
from appliance.settings import Settings


def _store(home: Path | None, models_dir: Path | None) -> tuple[Settings, ModelStore]:
    settings = settings_from(home=home, models_dir=models_dir)
    return settings, ModelStore(settings.models_dir, load_catalog())


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


@click.group()
def models() -> None:
    """The model store: what is on this box, verified by sha256."""


@models.command("list")
@click.option("--all", "show_all", is_flag=True, help="Show the whole catalog.")
@click.option("--json", "as_json", is_flag=True)
@home_option
@models_dir_option
def list_(show_all: bool, as_json: bool, home: Path | None, models_dir: Path | None) -> None:
    """List models on the box (or the whole catalog with --all)."""
    _, store = _store(home, models_dir)
    rows = []
    for model in store.catalog.models:
        for quant in model.quants:
            present = store.has(model, quant)
            if not present and not show_all:
                continue
            rows.append(
                {
                    "id": model.id,
                    "kind": model.kind,
                    "quant": quant.name,
                    "size": _gib(quant.size) if quant.size else "",
                    "bytes": quant.size,
                    "on_box": "yes" if present else "",
                    "default": "yes" if model.default and quant.name == model.default_quant else "",
                    "license": model.license,
                }
            )
    if as_json:
        echo_json(rows)
    elif rows:
        echo_table(rows, ["id", "kind", "quant", "size", "on_box", "default", "license"])
    else:
        click.echo(
            "No models on this box. Fetch the defaults with `appliance models fetch --default`."
        )


def _resolve(store: ModelStore, model_id: str, quant: str | None) -> tuple[CatalogModel, Quant]:
    try:
        model = store.catalog.get(model_id)
        return model, model.quant(quant)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None


@models.command("fetch")
@click.argument("model_ids", nargs=-1)
@click.option("--default", "defaults", is_flag=True, help="Fetch the default set.")
@click.option("--quant", default=None, help="Quantization (default: the model's default).")
@click.option("--sha256", default=None, help="Expected sha256 where the catalog pins none.")
@click.option("--source", default=None, help="Use this source instead of the catalog's.")
@click.option(
    "--from-peer", default=None, metavar="NAME", help="Copy it from this box of the fleet."
)
@home_option
@models_dir_option
def fetch(
    model_ids: tuple[str, ...],
    defaults: bool,
    quant: str | None,
    sha256: str | None,
    source: str | None,
    from_peer: str | None,
    home: Path | None,
    models_dir: Path | None,
) -> None:
    """Fetch models into the store (a file already there is not fetched again)."""
    settings, store = _store(home, models_dir)
    if from_peer is not None:
        if source is not None:
            raise click.UsageError("give --source or --from-peer, not both")
        source = f"fleet:{from_peer}"
    with contextlib.ExitStack() as stack:
        plugins: dict[str, ModelSource] = {}
        if source is not None and not fetchable(source):
            plugins = stack.enter_context(opened(settings)).model_sources()
            if not fetchable(source, plugins):
                raise click.ClickException(
                    f"no plugin of this box fetches from {source!r}"
                    + (
                        " (copying from a peer needs the fleet plugin and a fleet_key)"
                        if from_peer is not None
                        else ""
                    )
                )
        _fetch_all(store, model_ids, defaults, quant, sha256, source, plugins)


def _fetch_all(
    store: ModelStore,
    model_ids: tuple[str, ...],
    defaults: bool,
    quant: str | None,
    sha256: str | None,
    source: str | None,
    plugins: dict[str, ModelSource],
) -> None:
    wanted = [m.id for m in store.catalog.defaults()] if defaults else []
    wanted += list(model_ids)
    if not wanted:
        raise click.UsageError("name a model id or pass --default")
    for model_id in wanted:
        model, chosen = _resolve(store, model_id, quant)
        already = store.has(model, chosen)
        try:
            stored = fetch_model(
                store, model, chosen, sha256=sha256, source=source, plugins=plugins
            )
        except ApplianceError as exc:
            raise click.ClickException(exc.message) from None
        verb = "already present" if already else "fetched"
        click.echo(f"{model.id} {chosen.name}: {verb}, {_gib(stored.size)}, sha256 ok")


@models.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id", "model_id", default=None, help="Catalog id (found by hash when pinned).")
@click.option("--quant", default=None)
@click.option("--sha256", default=None, help="The hash its publisher gives (needed if unpinned).")
@home_option
@models_dir_option
def import_(
    path: Path,
    model_id: str | None,
    quant: str | None,
    sha256: str | None,
    home: Path | None,
    models_dir: Path | None,
) -> None:
    """Copy a model file from a local path or USB stick into the store, checking its hash."""
    _, store = _store(home, models_dir)
    if model_id is None:
        found = store.catalog.find_file(sha256_file(path))
        if found is None:
            raise click.ClickException(
                f"{path.name} matches no pinned catalog file; pass --id and --sha256"
            )
        model, chosen = found
    else:
        model, chosen = _resolve(store, model_id, quant)
    try:
        stored = store.add_file(model, chosen, path, sha256)
    except ApplianceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"imported {model.id} {chosen.name} ({_gib(stored.size)}) to {stored.path}")


@models.command("verify")
@home_option
@models_dir_option
def verify(home: Path | None, models_dir: Path | None) -> None:
    """Re-hash every stored file; exit 1 if any differs from its pin."""
    _, store = _store(home, models_dir)
    results = store.verify_all()
    bad = 0
    for stored, ok, actual in results:
        click.echo(f"{'ok  ' if ok else 'BAD '} {stored.model.id} {stored.quant.name} {actual}")
        bad += not ok
    if bad:
        raise click.ClickException(f"{bad} file(s) failed verification; remove and fetch again")
    if not results:
        click.echo("no models on this box")


@models.command("remove")
@click.argument("model_id")
@click.option("--quant", default=None, help="Only this quantization.")
@home_option
@models_dir_option
def remove(model_id: str, quant: str | None, home: Path | None, models_dir: Path | None) -> None:
    """Delete a model's files from the store."""
    _, store = _store(home, models_dir)
    model, chosen = _resolve(store, model_id, quant)
    removed = store.remove(model, chosen if quant else None)
    if not removed:
        raise click.ClickException(f"{model_id} is not on this box")
    click.echo(f"removed {len(removed)} file(s) of {model_id}")
