"""`returnsync simulate`: a coherent returns landscape with injected faults and its answer key."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import click


def _as_of(_ctx, _param, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@click.command("simulate")
@click.option(
    "--returns",
    "n_returns",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Number of returns to generate.",
)
@click.option(
    "--seed",
    type=int,
    default=7,
    show_default=True,
    help="Random seed: the same seed (and as-of) gives byte-identical output.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Landing directory to write (its source folders are replaced).",
)
@click.option(
    "--as-of",
    "as_of",
    callback=_as_of,
    default=None,
    help="Reconciliation time the landscape is built for (ISO-8601; default: now).",
)
@click.option(
    "--fault-rate",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="Share of returns given an injected fault (near misses: half of it).",
)
@click.option(
    "--no-noise",
    is_flag=True,
    help="No delivery noise: no duplicates, reordering, mixed encodings, typos, "
    "malformed records or quarantined file.",
)
@click.option(
    "--kafka",
    "kafka_bootstrap",
    default=None,
    metavar="BOOTSTRAP",
    help="Also publish the CDC records to this Kafka bootstrap server.",
)
@click.option(
    "--erp",
    type=click.Choice(["files", "tryton"]),
    default="files",
    show_default=True,
    help="Where the ERP side goes: CDC files in the landing, or written into the Tryton server "
    "of RETURNSYNC_ERP_* through its API (DESIGN §13; Debezium then captures it).",
)
@click.option(
    "--erp-unit-short-credits",
    is_flag=True,
    help="With --erp tryton: a credit note the answer key has off by an amount is made short "
    "by a credited unit instead, as a person crediting too few units would (a credit fix can "
    "complete it; the live loop's landscape).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(
    n_returns: int,
    seed: int,
    out_dir: Path,
    as_of: datetime | None,
    fault_rate: float,
    no_noise: bool,
    kafka_bootstrap: str | None,
    erp: str,
    erp_unit_short_credits: bool,
    quiet: bool,
) -> None:
    """Write a simulated returns landscape (DESIGN §2.9) and its answer key to OUT."""
    from returnsync_sim import SimOptions, publish
    from returnsync_sim import simulate as run_simulation

    client = _tryton_client() if erp == "tryton" else None  # checked before anything is written
    options = replace(SimOptions(), fault_rate=fault_rate, noise=not no_noise)
    summary = run_simulation(n_returns, seed, out_dir, as_of, options, progress=not quiet)
    if client is not None:
        from returnsync_sim import load_landscape

        summary["erp_tryton"] = load_landscape(
            out_dir, client, progress=not quiet, unit_short_credits=erp_unit_short_credits
        )
    if kafka_bootstrap:
        counts = publish(out_dir, kafka_bootstrap, options.partitions, progress=not quiet)
        summary["kafka_published"] = sum(counts.values())
    click.echo(
        json.dumps(
            {
                k: summary[k]
                for k in ("seed", "as_of", "returns", "expected_mismatch_rows", "dead_letters")
            }
            | ({"kafka_published": summary["kafka_published"]} if kafka_bootstrap else {})
            | ({"erp_tryton": summary["erp_tryton"]} if client is not None else {})
        )
    )


def _tryton_client():
    """A logged-in client of the Tryton named by RETURNSYNC_ERP_* (ConfigError if unset)."""
    from pipelines.errors import ConfigError, ErpUnavailable
    from pipelines.lib.erp.base import ErpAuthError, ErpConfigError, ErpTransientError
    from pipelines.lib.erp.tryton import TrytonClient
    from pipelines.settings import Settings

    settings = Settings.from_env()
    missing = [
        var
        for var, value in (
            ("RETURNSYNC_ERP_URL", settings.erp_url),
            ("RETURNSYNC_ERP_DATABASE", settings.erp_database),
            ("RETURNSYNC_ERP_USER", settings.erp_user),
            ("RETURNSYNC_ERP_PASSWORD", settings.erp_password),
        )
        if not value
    ]
    if missing:
        raise ConfigError(f"--erp tryton needs {', '.join(missing)} (make stack-up prints them)")
    client = TrytonClient(
        settings.erp_url, settings.erp_database, settings.erp_user, settings.erp_password,
        timeout=300,
    )  # fmt: skip
    try:
        client.login()
    except (ErpConfigError, ErpAuthError) as exc:
        raise ConfigError(str(exc)) from None
    except ErpTransientError as exc:
        raise ErpUnavailable(str(exc)) from None
    return client
