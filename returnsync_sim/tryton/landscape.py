"""`returnsync simulate --erp tryton`: the ERP side of a written landscape moved into Tryton.

After the simulator has written the landing (DESIGN §2.9) and its answer key, the ERP state it
wrote as CDC files is replayed into Tryton (`loader`), and those files leave the landing: the
ERP data reaches returnsync only through Debezium (DESIGN §13). The answer key of mismatches
holds as written (the loader carries every fact a rule reads); the expected dead letters lose the
ERP records' malformed-record noise, which Tryton cannot hold and Debezium never sends.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

from returnsync_sim.tryton.loader import load
from returnsync_sim.tryton.state import ERP_PREFIX, erp_files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _drop_erp_dead_letters(out: Path, erp_hashes: set[str]) -> int:
    """Remove the ERP files' rows from expected_dead_letters.csv; returns how many went."""
    path = out / "expected_dead_letters.csv"
    if not path.exists():
        return 0
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    keep = [
        r for r in body
        if not (len(r) > 1 and r[0] == "cdc" and (
            r[1].startswith(ERP_PREFIX) or r[1].split(":", 1)[0] in erp_hashes))
    ]  # fmt: skip
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *keep])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return len(body) - len(keep)


# the scenario whose ERP credit note is off by an amount (returnsync_sim/scenarios.py)
AMOUNT_OFF_SCENARIO = "credit_amount_off"


def _amount_off_rmas(out: Path) -> list[str]:
    path = out / "scenarios.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [r["rma_number"] for r in csv.DictReader(f)
                if r["scenario"] == AMOUNT_OFF_SCENARIO and r["rma_number"]]  # fmt: skip


def _rewrite_money(out: Path, at_risk: dict[str, Any]) -> None:
    """expected_money.csv's money at risk of the returns whose credit a person made short by
    units (refund - credit, as Tryton computed the credit) instead of the simulated amount."""
    path = out / "expected_money.csv"
    if not at_risk or not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
        fields = list(rows[0]) if rows else []
    for row in rows:
        if row.get("rma_number") in at_risk:
            row["money_at_risk"] = f"{at_risk[row['rma_number']]:.2f}"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def load_landscape(
    out: Path | str, client, progress: bool = True, unit_short_credits: bool = False
) -> dict[str, Any]:
    """Load the landing's ERP state into Tryton, then take the ERP files out of the landing.

    `unit_short_credits`: the credit notes of the `credit_amount_off` scenario are made short
    the way a person makes them by crediting too few units (one unit fewer, or a line left off)
    rather than by the simulated amount, so an ERP-native credit fix can complete them (the
    loop of DESIGN §13 shows every fixable rule fixed). The answer key's mismatches stay as
    written; expected_money.csv gets the money those returns then have at risk."""
    out = Path(out)
    files = erp_files(out)
    short = _amount_off_rmas(out) if unit_short_credits else []
    bar = None
    if progress:
        from tqdm import tqdm

        returns = sum(1 for _ in _return_rows(out))
        bar = tqdm(total=returns, desc="tryton returns", unit="ret", file=sys.stderr)
    try:
        result = load(out, client, progress=bar.update if bar else None, unit_short_rmas=short)
    finally:
        if bar is not None:
            bar.close()
    hashes = {_sha256(f) for f in files}
    for f in files:
        f.unlink()
    dropped = _drop_erp_dead_letters(out, hashes)
    _rewrite_money(out, {rma: risk for rma, (_, risk) in result.unit_short.items()})
    summary = result.as_dict() | {
        "returns_per_minute": round(60 * result.returns / result.seconds, 1)
        if result.seconds
        else None,
        "erp_files_removed": len(files),
        "erp_dead_letters_dropped": dropped,
    }
    (out / "tryton_load.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _return_rows(out: Path):
    from returnsync_sim.tryton.state import read_erp_state

    for row in read_erp_state(out).get("sale_sale", {}).values():
        if row["origin"]:
            yield row
