"""Amazon's own samples (`../shared/fixtures/amazon_sp_api/`, issue 26) landed as a returns report.

Amazon publishes no sample rows of the flat-file report, only its layout (SOURCES.md, which spells
`Return Reason`) and real return records of the Returns API (the sandbox and example JSON files).
The report is built here from those files alone, never from the code's own column list: the
header from SOURCES.md's layout, completed with DESIGN §2.6's list for the columns SOURCES.md
elides (`...`), and one row per sample return. Every sample return must land with its reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipelines.lib.files import land_files
from pipelines.lib.warehouse import connect

SHARED = Path(__file__).resolve().parents[3] / "shared"
SAMPLES = SHARED / "fixtures" / "amazon_sp_api"


def documented_header() -> list[str]:
    """DESIGN §2.6's columns, spelled as SOURCES.md spells those it lists."""
    design = (SHARED / "DESIGN.md").read_text()
    listing = design[design.index("Header row with Amazon's column names:") :]
    listing = listing[: listing.index(". Successive")]
    names = re.findall(r"`([^`]+)`", listing)
    sources = " ".join((SAMPLES / "SOURCES.md").read_text().split())
    layout = re.search(
        r"GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE \(tab-delimited: ([^)]*)\)", sources
    )
    documented = [n.strip() for n in layout.group(1).split(",") if n.strip() != "..."]
    spelled = {n.casefold(): n for n in documented}
    assert "Return Reason" in documented  # the spelling that used to lose every reason
    assert set(spelled) <= {n.casefold() for n in names}  # SOURCES.md names a column we expect
    return [spelled.get(n.casefold(), n) for n in names]


def sample_returns() -> list[dict]:
    sandbox = json.loads(
        (SAMPLES / "externalFulfillmentReturns_listReturns_sandbox.json").read_text()
    )
    example = json.loads(
        (SAMPLES / "externalFulfillmentReturns_listReturns_example.json").read_text()
    )
    found = [r for pair in sandbox for r in pair["response"].get("returns", [])]
    return found + example["application/json"]["returns"]


def report_row(header: list[str], record: dict) -> str:
    meta = record.get("returnMetadata", {})
    reverse = record.get("returnShippingInfo", {}).get("reverseTrackingInfo", {})
    cells = {
        "order id": record["marketplaceChannelDetails"]["customerOrderId"],
        "return request date": record["creationDateTime"],
        "return request status": record["status"],
        "amazon rma id": meta["rmaId"],
        "return carrier": reverse.get("carrierName", ""),
        "tracking id": reverse.get("trackingId", ""),
        "merchant sku": record["merchantSku"],
        "return quantity": str(record["numberOfUnits"]),
        "return reason": meta.get("returnReason", ""),
        "return type": record["returnType"],
        "invoice number": meta.get("invoiceInformation", {}).get("id", ""),
    }
    return "\t".join(cells.get(h.casefold(), "") for h in header)


@pytest.fixture
def con(tmp_path):
    connection = connect(tmp_path / "warehouse.duckdb")
    yield connection
    connection.close()


def test_real_amazon_samples_land_with_their_reasons(tmp_path, con):
    header = documented_header()
    records = sample_returns()
    landing = tmp_path / "landing"
    (landing / "amazon").mkdir(parents=True)
    lines = ["\t".join(header), *(report_row(header, r) for r in records)]
    (landing / "amazon" / "returns_2024-05-02.tsv").write_text("\n".join(lines) + "\n")

    result = land_files(con, landing)["amazon_returns"]

    assert not result.quarantined and result.dead_letters == 0
    assert result.rows == len(records) >= 10
    got = con.execute(
        "select amazon_rma_id, merchant_sku, return_quantity, return_reason, "
        "return_request_date, _extra from raw.amazon_returns order by _row_number"
    ).fetchall()
    assert [(rma, sku, qty, reason) for rma, sku, qty, reason, _, _ in got] == [
        (
            r["returnMetadata"]["rmaId"],
            r["merchantSku"],
            r["numberOfUnits"],
            r["returnMetadata"]["returnReason"],
        )
        for r in records
    ]
    assert all(reason for _, _, _, reason, _, _ in got)  # no reason lost to the header's case
    assert all(when is not None for *_, when, _ in got)
    assert all(extra is None for *_, extra in got)  # every column matched the contract
