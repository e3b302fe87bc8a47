"""`returnsync docs`: the dbt documentation site (models, columns, lineage graph)."""

import contextlib
import functools
import http.server

import click

from pipelines.dbt import dbt_project, prepare_manifest, run_dbt
from pipelines.lib.warehouse import initialize
from pipelines.settings import DBT_PROJECT_DIR, Settings


@click.command()
@click.option(
    "--serve",
    "port",
    type=int,
    default=None,
    metavar="PORT",
    help="Also serve the site on http://127.0.0.1:PORT until Ctrl-C.",
)
def docs(port: int | None) -> None:
    """Generate the dbt docs site into dbt_project/target (index.html + catalog).

    Column types come from the warehouse: after `returnsync run` the catalog is complete; on a
    fresh machine the warehouse is created empty first, so the site still builds.
    """
    settings = Settings.from_env()
    prepare_manifest(settings)
    initialize(settings.db_path)
    try:
        run_dbt(["docs", "generate"], settings)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    target = DBT_PROJECT_DIR / dbt_project.target_path
    click.echo(f"dbt docs written to {target / 'index.html'}")
    if port is not None:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(target))
        with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
            click.echo(f"serving on http://127.0.0.1:{port} (Ctrl-C stops)")
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
