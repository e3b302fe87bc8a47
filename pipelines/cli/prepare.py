"""`returnsync prepare`: parse the dbt project so the Dagster code location can load."""

import click

from pipelines.dbt import prepare_manifest


@click.command()
@click.option("--force", is_flag=True, help="Parse even when the manifest is up to date.")
def prepare(force: bool) -> None:
    """Write dbt_project/target/manifest.json (dbt parse) if it is missing or stale.

    Dagster's dbt assets read the manifest when the code location loads; `make` targets and the
    test suite call this first.
    """
    path = prepare_manifest(force=force)
    click.echo(f"dbt manifest ready: {path}")
