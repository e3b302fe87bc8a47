"""The queues a person works through, and the decisions on adjustments (DESIGN §6, §7, §11):

- `returnsync adjustments | exceptions | dead-letters | quarantine`: list a queue, filtered,
  newest first, as a table (default), formula-safe CSV or JSON;
- `returnsync approve | reject`: several adjustment ids, or a filter (`--rule`, `--max-amount A
  --currency ISO`) that prints the ids it selected and acts only with `--yes`. Who and when are
  recorded (pipelines.lib.writeback.decide). Repeating a decision already taken exits 0 and says
  so; an id that does not exist or cannot take the decision stops the command before anything is
  done (exit 1).
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from pipelines.errors import ConfigError, JobFailed

FORMATS = ("table", "csv", "json")
CELL_CHARS = 48  # a table cell is cut here (csv and json carry the whole value)

DB_OPTION = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="DuckDB warehouse (default: RETURNSYNC_DB, or data/returnsync.duckdb).",
)
FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table for people; csv (spreadsheet-safe) or json for tools.",
)
SINCE_OPTION = click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="Only rows from this time on: an ISO date or time (UTC without an offset), "
    "or an age such as 24h or 7d.",
)
LIMIT_OPTION = click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="At most this many rows (newest)."
)

# the columns a table shows (csv and json show every column of the queue)
TABLE_COLUMNS = {
    "adjustments": (
        "adjustment_id",
        "status",
        "rule",
        "rma_number",
        "sku",
        "action",
        "amount",
        "currency",
        "quantity",
        "approved_by",
        "decided_reason",
    ),
    "exceptions": (
        "exception_id",
        "status",
        "rule",
        "rma_number",
        "sku",
        "reason",
        "adjustment_id",
        "amount",
        "currency",
        "created_at",
    ),
    "dead_letters": ("source", "position", "error", "failed_at"),
    "quarantine": ("source", "path", "reason", "quarantined_at"),
}


# -- opening the warehouse, parsing options -----------------------------------------------------


def _db(db_path: Path | None) -> Path:
    if db_path is None:
        from pipelines.settings import Settings

        db_path = Settings.from_env().db_path
    if not db_path.exists():
        raise ConfigError(f"no warehouse at {db_path}: run `returnsync run` first")
    return db_path


def _open(db_path: Path, read_only: bool):
    import duckdb

    from pipelines.lib.warehouse import connect

    try:
        return connect(db_path, read_only=read_only)  # waits while a run holds it (exit 3 after)
    except duckdb.Error as exc:  # not a DuckDB file, or a newer format
        message = " ".join(str(exc).split())
        raise ConfigError(f"cannot open the warehouse {db_path}: {message}") from None


_AGE = re.compile(r"^\s*(\d+)\s*([hd])\s*$")


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """`--since`: an ISO date or time (UTC when it has no offset), or an age (`24h`, `7d`)."""
    if text is None:
        return None
    age = _AGE.match(text)
    if age:
        hours = int(age[1]) * (24 if age[2] == "d" else 1)
        return (now or datetime.now(UTC)) - timedelta(hours=hours)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            day = date.fromisoformat(text.strip())
        except ValueError:
            raise ConfigError(
                f"--since {text!r} is neither an ISO date or time (2026-11-01, "
                "2026-11-01T08:00:00Z) nor an age (24h, 7d)"
            ) from None
        when = datetime(day.year, day.month, day.day)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_amount(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        raise ConfigError(f"--max-amount {text!r} is not a number (e.g. 250 or 99.90)") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"--max-amount must be a number of zero or more, got {text!r}")
    return amount


def _filters(**values):
    from pipelines.lib.queues import Filters, QueueError, check_currency

    try:
        values["currency"] = check_currency(values.get("currency"))
    except QueueError as exc:
        raise ConfigError(str(exc)) from None
    if values.get("max_amount") is not None and values.get("currency") is None:
        raise ConfigError(
            "--max-amount needs --currency ISO: amounts are never compared across currencies"
        )
    return Filters(**values)


# -- output ---------------------------------------------------------------------------------------


def _text(value: object) -> str:
    """A value as plain text: exact decimals, ISO times, empty for None."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


CENT = Decimal("0.01")


def money_text(value: Decimal | None) -> str | None:
    """An amount exactly, with at least two decimals: 90.0000 -> 90.00, 90.1250 -> 90.125."""
    if value is None:
        return None
    if value == value.quantize(CENT):
        return format(value.quantize(CENT), "f")
    return format(value.normalize(), "f")


def quantity_text(value: Decimal | None) -> str | None:
    """Units without trailing zeros: 2.000 -> 2, 1.500 -> 1.5."""
    if value is None:
        return None
    return format(value.normalize(), "f")


def _shaped(rows: list[dict]) -> list[dict]:
    """Amounts and quantities as exact text (csv, json and the table alike)."""
    out = []
    for row in rows:
        row = dict(row)
        if "amount" in row:
            row["amount"] = money_text(row["amount"])
        if "quantity" in row:
            row["quantity"] = quantity_text(row["quantity"])
        out.append(row)
    return out


def _printable(text: str) -> str:
    """Control characters (a terminal escape, a bare carriage return) shown as `?`."""
    return "".join("?" if unicodedata.category(ch).startswith("C") else ch for ch in text)


def render_table(columns: Sequence[str], rows: Sequence[dict]) -> str:
    cells = [[_printable(_text(row.get(c))) for c in columns] for row in rows]
    cells = [[c if len(c) <= CELL_CHARS else c[: CELL_CHARS - 1] + "…" for c in r] for r in cells]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for r in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def render_json(name: str, columns: Sequence[str], rows: Sequence[dict]) -> str:
    def plain(value: object) -> object:
        if isinstance(value, Decimal):
            return format(value, "f")  # exact; money beside its currency column
        if isinstance(value, datetime | date):
            return value.isoformat()
        return value

    data = {
        "queue": name,
        "count": len(rows),
        "rows": [{c: plain(row.get(c)) for c in columns} for row in rows],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _emit(name: str, rows: list[dict], fmt: str, columns: Sequence[str], noun: str) -> None:
    rows = _shaped(rows)
    if fmt == "csv":
        from pipelines.lib.csvsafe import write_rows

        write_rows(sys.stdout, columns, ([row.get(c) for c in columns] for row in rows))
    elif fmt == "json":
        sys.stdout.write(render_json(name, columns, rows))
    elif not rows:
        click.echo(f"no {noun}")
    else:
        shown = [c for c in TABLE_COLUMNS[name] if c in columns]
        sys.stdout.write(render_table(shown, rows))
        click.echo(f"{len(rows)} {noun}")
    sys.stdout.flush()


def _list(
    name: str, db_path: Path | None, fmt: str, noun: str, hide: Sequence[str] = (), **filters
) -> None:
    from pipelines.lib.queues import QUEUES, QueueError, list_queue

    path = _db(db_path)
    chosen = _filters(**filters)
    con = _open(path, read_only=True)
    try:
        rows = list_queue(con, name, chosen)
    except QueueError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        con.close()
    columns = [c for c in QUEUES[name].columns if c not in hide]
    _emit(name, rows, fmt, columns, noun)


# -- the four queues ------------------------------------------------------------------------------


@click.command("adjustments")
@click.option(
    "--status",
    type=click.Choice(("planned", "approved", "rejected", "sent", "exception", "all")),
    default="all",
    show_default=True,
    help="planned ones wait for a person (approve / reject).",
)
@click.option("--rule", default=None, help="Only adjustments for this rule.")
@click.option("--rma", default=None, help="Only this return (RMA number).")
@click.option("--currency", default=None, metavar="ISO", help="Only amounts in this currency.")
@click.option(
    "--max-amount", default=None, metavar="A", help="Only amounts up to A (needs --currency)."
)
@SINCE_OPTION
@LIMIT_OPTION
@FORMAT_OPTION
@DB_OPTION
def adjustments(status, rule, rma, currency, max_amount, since, limit, fmt, db_path) -> None:
    """List write-back adjustments: what would be or was sent to the ERP, and who decided.

    Amounts are shown with their currency. Planned adjustments wait for `returnsync approve` or
    `reject`; approved ones are sent by the next push.
    """
    _list(
        "adjustments",
        db_path,
        fmt,
        "adjustment(s)",
        status=status,
        rule=rule,
        rma=rma,
        currency=currency,
        max_amount=parse_amount(max_amount),
        since=parse_since(since),
        limit=limit,
    )


@click.command("exceptions")
@click.option(
    "--status",
    type=click.Choice(("open", "closed", "all")),
    default="open",
    show_default=True,
    help="open ones need a person.",
)
@click.option("--rule", default=None, help="Only exceptions for this rule.")
@click.option("--rma", default=None, help="Only this return (RMA number).")
@click.option(
    "--currency", default=None, metavar="ISO", help="Only those whose adjustment is in it."
)
@click.option("--reason", "contains", default=None, metavar="TEXT", help="Reason contains TEXT.")
@SINCE_OPTION
@LIMIT_OPTION
@FORMAT_OPTION
@DB_OPTION
def exceptions(status, rule, rma, currency, contains, since, limit, fmt, db_path) -> None:
    """List the exception queue: mismatches with no automatic fix, and adjustments the ERP
    refused or could not take (with its message).

    An adjustment in the queue is retried by approving it again (`returnsync approve ID`).
    """
    _list(
        "exceptions",
        db_path,
        fmt,
        "exception(s)",
        status=status,
        rule=rule,
        rma=rma,
        currency=currency,
        contains=contains,
        since=parse_since(since),
        limit=limit,
    )


@click.command("dead-letters")
@click.option("--source", default=None, help="Only this source (cdc, shopify, amazon, b2b...).")
@click.option("--error", "contains", default=None, metavar="TEXT", help="Error contains TEXT.")
@click.option(
    "--raw",
    "raw_wanted",
    is_flag=True,
    help="Also the record as received (csv and json; it may hold personal data).",
)
@SINCE_OPTION
@LIMIT_OPTION
@FORMAT_OPTION
@DB_OPTION
def dead_letters(source, contains, raw_wanted, since, limit, fmt, db_path) -> None:
    """List dead letters: records that could not be decoded or parsed, with their position
    (topic:partition:offset or file:line) and the reason.

    `returnsync replay` re-reads a topic from a position once its producer is fixed.
    """
    _list(
        "dead_letters",
        db_path,
        fmt,
        "dead letter(s)",
        hide=() if raw_wanted else ("raw",),
        source=source,
        contains=contains,
        since=parse_since(since),
        limit=limit,
    )


@click.command("quarantine")
@click.option("--source", default=None, help="Only this source (shopify, amazon, b2b...).")
@click.option("--reason", "contains", default=None, metavar="TEXT", help="Reason contains TEXT.")
@SINCE_OPTION
@LIMIT_OPTION
@FORMAT_OPTION
@DB_OPTION
def quarantine(source, contains, since, limit, fmt, db_path) -> None:
    """List quarantined files: whole files whose header did not match their contract, kept
    with the reason (`quarantined_path` is where the file now is)."""
    _list(
        "quarantine",
        db_path,
        fmt,
        "quarantined file(s)",
        source=source,
        contains=contains,
        since=parse_since(since),
        limit=limit,
    )


# -- approve / reject ---------------------------------------------------------------------------


def _describe(row: dict) -> str:
    amount, quantity = money_text(row["amount"]), quantity_text(row["quantity"])
    money = f"{amount} {row['currency'] or ''}".strip() if amount is not None else ""
    units = f"{quantity} units" if quantity is not None else ""
    what = ", ".join(p for p in (money, units) if p)
    return (
        f"{row['adjustment_id']} {row['status']} {row['rule']} RMA {row['rma_number'] or '-'}: "
        f"{row['action']}" + (f" ({what})" if what else "")
    )


def _decide(
    decision: str,
    ids: tuple[str, ...],
    by: str,
    rule: str | None,
    max_amount: str | None,
    currency: str | None,
    yes: bool,
    db_path: Path | None,
    act: Callable,
) -> None:
    from pipelines.lib.queues import decision_state, select_for_decision
    from pipelines.lib.writeback import DecisionError

    past = {"approve": "approved", "reject": "rejected"}[decision]
    filtered = rule is not None or max_amount is not None or currency is not None
    if ids and filtered:
        raise click.UsageError("name adjustment ids, or select them with a filter, not both")
    if not ids and not filtered:
        raise click.UsageError(
            f"name the adjustment ids to {decision}, or select them with --rule and/or "
            "--max-amount A --currency ISO"
        )
    if not by.strip():
        raise ConfigError("--by is empty: say who decides")
    if by.strip().lower() == "auto":
        raise ConfigError("'auto' is reserved for automatic approval: give your own name")
    chosen = _filters(rule=rule, currency=currency, max_amount=parse_amount(max_amount))
    path = _db(db_path)
    con = _open(path, read_only=False)
    try:
        if filtered:
            selected = select_for_decision(con, decision, chosen)
            for row in selected:
                click.echo(f"selected: {_describe(row)}")
            if not selected:
                click.echo(f"no adjustment matches: nothing to {decision}")
                return
            if not yes:
                click.echo(
                    f"{len(selected)} adjustment(s) selected; nothing {past}: "
                    f"add --yes to {decision} them"
                )
                return
            todo = [r["adjustment_id"] for r in selected]
        else:
            states = decision_state(con, list(ids))
            unknown = [s.adjustment_id for s in states if s.status is None]
            if unknown:
                raise JobFailed(
                    f"no adjustment {', '.join(repr(u) for u in unknown)}: nothing {past}"
                )
            blocked = [s for s in states if s.kind(decision) == "impossible"]
            if blocked:
                why = "; ".join(f"adjustment {s.adjustment_id} is {s.status}" for s in blocked)
                raise JobFailed(f"{why}: it cannot be {past}; nothing {past}")
            for s in states:
                if s.kind(decision) == "already":
                    who = f" by {s.approved_by}" if s.approved_by else ""
                    when = f" at {s.approved_at.isoformat()}" if s.approved_at else ""
                    click.echo(f"{s.adjustment_id} already {s.status}{who}{when} (nothing to do)")
            todo = [s.adjustment_id for s in states if s.kind(decision) == "todo"]
        failed = []
        for adjustment_id in todo:
            try:
                act(con, adjustment_id, by)
            except DecisionError as exc:  # changed since it was read (a push, another person)
                failed.append(str(exc))
                continue
            click.echo(f"{adjustment_id} {past} by {by.strip()}")
    finally:
        con.close()
    if failed:
        raise JobFailed("; ".join(failed))


ID_ARGUMENT = click.argument("adjustment_ids", nargs=-1, metavar="[ADJUSTMENT_ID]...")
RULE_OPTION = click.option("--rule", default=None, help="Select the adjustments of this rule.")
MAX_AMOUNT_OPTION = click.option(
    "--max-amount",
    default=None,
    metavar="A",
    help="Select those of at most A (with --currency; the sign is ignored).",
)
CURRENCY_OPTION = click.option(
    "--currency", default=None, metavar="ISO", help="Select those in this currency."
)
YES_OPTION = click.option(
    "--yes", is_flag=True, help="Act on what a filter selected (without it: only list them)."
)


@click.command("approve")
@ID_ARGUMENT
@click.option("--by", "by", required=True, help="Who approves (recorded with the time).")
@RULE_OPTION
@MAX_AMOUNT_OPTION
@CURRENCY_OPTION
@YES_OPTION
@DB_OPTION
def approve(adjustment_ids, by, rule, max_amount, currency, yes, db_path) -> None:
    """Approve planned adjustments (or one in the exception queue, by id, to retry it).

    Name ids, or select planned ones with a filter, e.g. `--rule receipt_not_posted` or
    `--max-amount 500 --currency EUR`: a filter lists what it selected and approves only with
    --yes. Approved adjustments are sent by the next push (`returnsync push` or the sensor).
    Approving one already approved (or sent) exits 0 and says so.
    """
    from pipelines.lib.writeback import approve as do_approve

    _decide(
        "approve",
        adjustment_ids,
        by,
        rule,
        max_amount,
        currency,
        yes,
        db_path,
        lambda con, i, who: do_approve(con, i, who),
    )


@click.command("reject")
@ID_ARGUMENT
@click.option("--by", "by", required=True, help="Who rejects (recorded with the time).")
@click.option("--reason", default=None, help="Why (recorded; shown in the adjustment's history).")
@RULE_OPTION
@MAX_AMOUNT_OPTION
@CURRENCY_OPTION
@YES_OPTION
@DB_OPTION
def reject(adjustment_ids, by, reason, rule, max_amount, currency, yes, db_path) -> None:
    """Reject adjustments that were not sent: they are never sent to the ERP.

    Name ids, or select with a filter (planned, approved or in the exception queue), e.g.
    `--rule refund_without_credit --yes`: a filter lists what it selected and rejects only with
    --yes. Rejecting one already rejected exits 0 and says so.
    """
    from pipelines.lib.writeback import reject as do_reject

    _decide(
        "reject",
        adjustment_ids,
        by,
        rule,
        max_amount,
        currency,
        yes,
        db_path,
        lambda con, i, who: do_reject(con, i, who, reason),
    )
