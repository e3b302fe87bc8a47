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


def load_landscape(out: Path | str, client, progress: bool = True) -> dict[str, Any]:
    """Load the landing's ERP state into Tryton, then take the ERP files out of the landing."""
    out = Path(out)
    files = erp_files(out)
    bar = None
    if progress:
        from tqdm import tqdm

        returns = sum(1 for _ in _return_rows(out))
        bar = tqdm(total=returns, desc="tryton returns", unit="ret", file=sys.stderr)
    try:
        result = load(out, client, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    hashes = {_sha256(f) for f in files}
    for f in files:
        f.unlink()
    dropped = _drop_erp_dead_letters(out, hashes)
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
