"""Great Expectations at the landing boundary, the landing assets and the file drop sensor."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from assets.files import CHECK_NAME, file_assets
from expectations import validate_batch
from expectations.suites import PERSONAL_COLUMNS, SUITES
from pipelines.lib.contracts import FILE_SOURCES
from pipelines.lib.files import land_files, pending_files, sha256_of
from pipelines.lib.warehouse import connect
from pipelines.resources import SettingsResource
from sensors.files import drop_run_key, file_drop_sensor, file_ingest_job

EMAIL = "jane.doe@example.com"


def delivery(webhook_id: str, topic: str = "return.created", quantity: int = 1) -> dict:
    return {
        "webhook_id": webhook_id,
        "topic": topic,
        "delivered_at": "2024-05-01T10:00:00Z",
        "payload": {
            "id": 7,
            "rma": "LR-7",
            "state": "open",
            "created_at": "2024-05-01T09:00:00Z",
            "updated_at": "2024-05-01T09:00:00Z",
            "order_id": 1,
            "order_name": "#1001",
            "currency": "USD",
            "outcome": "refund",
            "total_refund": "10.00",
            "customer": {"email": EMAIL, "name": "Jane Doe"},
            "line_items": [{"line_item_id": 1, "sku": "S", "quantity": quantity, "price": "10"}],
        },
    }


def write_ndjson(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


B2B = (
    "request_id,sku,quantity,unit_price,status,contact_email\n"
    f"B-1,S,2,5.00,approved,{EMAIL}\n"
    f"B-2,S,0,5.00,approvedish,{EMAIL}\n"
)


def test_suites_cover_every_file_table_and_never_read_personal_data():
    assert set(SUITES) == {fs.raw_table for fs in FILE_SOURCES}
    for frames in SUITES.values():
        for frame in frames:
            assert frame.sql.startswith("select r._file, r._row_number")
            selected = frame.sql.split(" from ")[0]
            assert not any(f"r.{c}" in selected.split(", ") for c in PERSONAL_COLUMNS)


def test_bad_value_fails_with_a_sample_free_of_personal_data(tmp_path):
    landing = tmp_path / "landing"
    old = write_ndjson(landing / "returns_saas" / "old.ndjson", [delivery("w-0", "return.bogus")])
    con = connect(tmp_path / "w.duckdb")
    try:
        land_files(con, landing)
        new = write_ndjson(
            landing / "returns_saas" / "new.ndjson",
            [delivery("w-1"), delivery("w-2", "return.exploded", quantity=0), delivery("w-3")],
        )
        summary = land_files(con, landing)["returns_saas_webhooks"]
        outcome = validate_batch(con, "returns_saas_webhooks", summary.landed_sha256)
        good = validate_batch(con, "returns_saas_webhooks", [])
    finally:
        con.close()

    assert summary.landed_sha256 == [sha256_of(new)] != [sha256_of(old)]
    assert not outcome.success and outcome.rows == 3  # only this run's batch is validated
    failed = {(r.frame, r.column, r.unexpected_count, r.element_count) for r in outcome.failed}
    assert failed == {("deliveries", "topic", 1, 3), ("line_items", "quantity", 1, 3)}
    assert sorted(
        (s["column"], s["value"], s["_file"], s["_row_number"]) for s in outcome.sample
    ) == [
        ("quantity", 0, "returns_saas/new.ndjson", 2),
        ("topic", "return.exploded", "returns_saas/new.ndjson", 2),
    ]
    text = json.dumps(outcome.sample, default=str)
    assert EMAIL not in text and "Jane" not in text and "payload" not in text
    assert good.success and good.results == []


def test_landing_asset_reports_metadata_and_check(tmp_path):
    landing = tmp_path / "landing"
    (landing / "b2b").mkdir(parents=True)
    (landing / "b2b" / "requests.csv").write_text(B2B + "B-3,,1,1.00,submitted,x\n")
    (landing / "b2b" / "broken.csv").write_text("id,qty\n1,2\n")
    resources = {
        "settings": SettingsResource(db_path=str(tmp_path / "w.duckdb"), landing_dir=str(landing))
    }
    [b2b_asset] = [a for a in file_assets if a.key.path == ["raw", "b2b_credit_requests"]]

    result = dg.materialize([b2b_asset], resources=resources)

    assert result.success
    [materialization] = result.asset_materializations_for_node(b2b_asset.op.name)
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["files_landed"] == 1 and meta["rows"] == 2 and meta["dead_letters"] == 1
    assert meta["quarantined_files"] == 1
    assert meta["quarantined"][0]["file"] == "b2b/broken.csv"
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == CHECK_NAME and check.passed is False
    sample = check.metadata["failing_rows_sample"].value
    assert "approvedish" in sample and "b2b/requests.csv" in sample
    assert EMAIL not in sample and "contact_email" not in json.dumps(
        {k: str(v.value) for k, v in check.metadata.items()}
    )
    failed = check.metadata["failed_expectations"].value
    assert {(f["column"], f["unexpected"]) for f in failed} == {("status", 1), ("quantity", 1)}

    again = dg.materialize([b2b_asset], resources=resources)
    [materialization] = again.asset_materializations_for_node(b2b_asset.op.name)
    assert materialization.metadata["files_skipped"].value == 1
    assert materialization.metadata["rows"].value == 0
    assert again.get_asset_check_evaluations()[0].passed  # nothing new landed


def test_file_assets_keys_group_and_job():
    keys = {a.key.to_user_string() for a in file_assets}
    assert keys == {
        "raw/returns_saas_webhooks", "raw/shopify_refunds", "raw/amazon_returns",
        "raw/b2b_credit_requests", "raw/sku_crosswalk", "raw/warehouse_crosswalk",
        "raw/fx_rates",
    }  # fmt: skip
    assert {a.group_names_by_key[a.key] for a in file_assets} == {"landing"}
    assert file_ingest_job.name == "file_ingest_job"


@pytest.fixture
def sensor_settings(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    return (
        landing,
        tmp_path / "w.duckdb",
        SettingsResource(db_path=str(tmp_path / "w.duckdb"), landing_dir=str(landing)),
    )


def run_sensor(settings: SettingsResource, cursor: str | None = None):
    context = dg.build_sensor_context(resources={"settings": settings}, cursor=cursor)
    return file_drop_sensor(context)


def test_sensor_requests_a_run_for_a_new_file_only(sensor_settings):
    landing, db_path, settings = sensor_settings
    assert isinstance(run_sensor(settings), dg.SkipReason)  # nothing dropped, no warehouse yet

    path = write_ndjson(landing / "returns_saas" / "a.ndjson", [delivery("w-1")])
    request = run_sensor(settings)
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == sha256_of(path)
    assert pending_files(landing) == [("returns_saas", path, sha256_of(path))]

    con = connect(db_path)
    land_files(con, landing)
    con.close()
    assert isinstance(run_sensor(settings), dg.SkipReason)  # landed: nothing to request
    assert path.exists()  # the sensor never lands or moves anything


def test_sensor_run_key_covers_all_new_files(sensor_settings):
    landing, _, settings = sensor_settings
    a = write_ndjson(landing / "returns_saas" / "a.ndjson", [delivery("w-1")])
    (landing / "b2b").mkdir()
    b = landing / "b2b" / "b.csv"
    b.write_text(B2B)

    request = run_sensor(settings)

    assert request.run_key == drop_run_key([sha256_of(b), sha256_of(a)])
    assert request.run_key not in (sha256_of(a), sha256_of(b))


def test_sensor_cursor_caches_hashes(sensor_settings):
    landing, _, settings = sensor_settings
    path = write_ndjson(landing / "returns_saas" / "a.ndjson", [delivery("w-1")])
    context = dg.build_sensor_context(resources={"settings": settings})
    first = file_drop_sensor(context)
    cache = json.loads(context.cursor)
    assert cache["returns_saas/a.ndjson"][2] == sha256_of(path) == first.run_key

    # a cached hash is trusted while size and mtime are unchanged
    cache["returns_saas/a.ndjson"][2] = "f" * 64
    assert run_sensor(settings, json.dumps(cache)).run_key == "f" * 64
    # a changed file is hashed again
    write_ndjson(path, [delivery("w-22")])  # another size: no reliance on mtime resolution
    assert run_sensor(settings, json.dumps(cache)).run_key == sha256_of(path)


def test_big_batches_are_validated_in_chunks(tmp_path):
    landing = tmp_path / "landing"
    (landing / "b2b").mkdir(parents=True)
    lines = ["request_id,sku,quantity,status"]
    lines += [f"B-{i},S,{0 if i in (5, 2500) else 1},approved" for i in range(3000)]
    (landing / "b2b" / "big.csv").write_text("\n".join(lines) + "\n")
    con = connect(tmp_path / "w.duckdb")
    try:
        summary = land_files(con, landing)["b2b_credit_requests"]
        outcome = validate_batch(con, "b2b_credit_requests", summary.landed_sha256, chunk_vectors=1)
    finally:
        con.close()

    assert outcome.rows == 3000
    [failed] = outcome.failed
    assert (failed.column, failed.unexpected_count, failed.element_count) == ("quantity", 2, 3000)
    assert sorted(s["_row_number"] for s in outcome.sample) == [6, 2501]  # from both chunks


def test_sensor_skips_while_a_run_holds_the_warehouse(sensor_settings):
    import subprocess
    import sys

    landing, db_path, settings = sensor_settings
    write_ndjson(landing / "returns_saas" / "a.ndjson", [delivery("w-1")])
    connect(db_path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "print('locked', flush=True); sys.stdin.read()", str(db_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run_sensor(settings)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)

    assert isinstance(result, dg.SkipReason) and "warehouse busy" in result.skip_message
    assert isinstance(run_sensor(settings), dg.RunRequest)  # released: the drop is requested


def test_sensor_runs_again_for_an_earlier_reference_version_put_back(sensor_settings):
    """DESIGN §12: a reference file is versioned by arrival. Putting back content that landed
    before is a new version; its run key must differ from the run that first landed it, or
    Dagster would treat the request as done and never land it."""
    landing, db_path, settings = sensor_settings
    (landing / "reference").mkdir(parents=True, exist_ok=True)
    crosswalk = landing / "reference" / "sku_crosswalk.csv"
    full = "channel,channel_sku,erp_product_code\nshopify,A,P1\nshopify,B,P2\nshopify,C,P3\n"
    truncated = "channel,channel_sku,erp_product_code\nshopify,A,P1\n"

    keys = []
    for content in (full, truncated, full):
        crosswalk.write_text(content)
        request = run_sensor(settings)
        assert isinstance(request, dg.RunRequest), content
        keys.append(request.run_key)
        con = connect(db_path)
        try:
            land_files(con, landing, sources=["reference"])
        finally:
            con.close()
        assert isinstance(run_sensor(settings), dg.SkipReason)  # landed: nothing pending

    assert len(set(keys)) == 3, keys  # the put-back is requested under a key of its own
