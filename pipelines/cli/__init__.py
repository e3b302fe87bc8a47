"""The `returnsync` command line (DESIGN §7).

Each subcommand lives in its own module under `pipelines.cli` and is imported only when it is
called, so `returnsync --help` stays fast and does not import Dagster or dbt.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

# command name -> "module:attribute"; a command whose module is not there yet is not listed
COMMANDS: dict[str, str] = {
    "run": "pipelines.cli.run:run",
    "simulate": "pipelines.cli.simulate:simulate",
    "report": "pipelines.cli.report:report",
    "acknowledge": "pipelines.cli.acknowledge:acknowledge",
    "approve": "pipelines.cli.adjustments:approve",
    "reject": "pipelines.cli.adjustments:reject",
    "push": "pipelines.cli.adjustments:push",
    "replay": "pipelines.cli.replay:replay",
    "sql": "pipelines.cli.analyst:sql",
    "shell": "pipelines.cli.analyst:shell",
    "prepare": "pipelines.cli.prepare:prepare",
    "docs": "pipelines.cli.docs:docs",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, target in COMMANDS.items() if _available(target))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not _available(target):
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


def _available(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="returnsync")
def main() -> None:
    """returnsync keeps returns in step across channels, warehouses and the ERP.

    Configuration comes from RETURNSYNC_* environment variables (see .env.example);
    flags override them.
    """
