"""Reference files versioned by arrival (DESIGN §12): the current version is the last content to
arrive, even one landed before; a version dropping more than 10% of the keys is applied and
flagged (check `reference_mapping_drop`, run-summary warning). Other sources stay
content-addressed."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.files import REFERENCE_CHECK, file_assets, reference_checks
from pipelines.lib import migrations
from pipelines.lib.files import current_versions, land_files, pending_files, reference_warnings
from pipelines.lib.files import sha256_of as sha
from pipelines.lib.summary import print_summary
from pipelines.lib.warehouse import connect
from pipelines.resources import SettingsResource
from pipelines.settings import DBT_PROJECT_DIR

HEADER = "channel,channel_sku,erp_product_code\n"
FULL = HEADER + "".join(f"shopify,SH-{i},P-{i}\n" for i in range(20))
TRUNCATED = HEADER + "shopify,SH-0,P-0\nshopify,SH-1,P-1\n"  # an upload cut short: 18 keys gone
EDITED = FULL + "amazon,AMZ-1,P-1\n"  # one key more: a normal edit
ONE_LESS = HEADER + "".join(f"shopify,SH-{i},P-{i}\n" for i in range(1, 20))  # 5% dropped


@pytest.fixture
def landing(tmp_path) -> Path:
    (tmp_path / "landing" / "reference").mkdir(parents=True)
    return tmp_path / "landing"


@pytest.fixture
def con(tmp_path):
    connection = connect(tmp_path / "warehouse.duckdb")
    yield connection
    connection.close()


def put(landing: Path, text: str, name: str = "sku_crosswalk.csv") -> Path:
    path = landing / "reference" / name
    path.write_text(text)
    return path


def staged_skus(con) -> list[str]:
    """The staging model's own SQL (DuckDB runs it as dbt would, sources resolved)."""
    sql = DBT_PROJECT_DIR / "models/staging/reference/stg_reference__sku_crosswalks.sql"
    text = sql.read_text().replace("{{ source('raw', 'sku_crosswalk') }}", "raw.sku_crosswalk")
    return sorted(r[0] for r in con.execute(f"select channel_sku from ({text})").fetchall())


def test_putting_back_the_earlier_file_makes_it_current_again(landing, con):
    full = put(landing, FULL)
    first = land_files(con, landing, sources=["reference"])["sku_crosswalk"]
    put(landing, TRUNCATED)
    second = land_files(con, landing, sources=["reference"])["sku_crosswalk"]
    assert len(staged_skus(con)) == 2
    put(landing, FULL)  # the earlier content, put back
    assert [s for _, _, s in pending_files(landing, con)] == [sha(full)]
    third = land_files(con, landing, sources=["reference"])["sku_crosswalk"]

    assert (first.rows, second.rows, third.rows) == (20, 2, 0)  # landed once, not again
    assert con.execute("select count(*) from raw.sku_crosswalk").fetchone()[0] == 22
    assert [v.version for v in third.versions] == [3] and third.files_landed == 0
    current = current_versions(con)["sku_crosswalk"]
    assert (current.version, current.sha256) == (3, sha(full))
    assert (current.keys, current.keys_before, current.keys_dropped) == (20, 2, 0)
    assert len(staged_skus(con)) == 20
    assert pending_files(landing, con) == []
    again = land_files(con, landing, sources=["reference"])["sku_crosswalk"]
    assert (again.files_skipped, again.versions) == (1, [])  # the current content: nothing


def test_a_version_dropping_more_than_ten_percent_is_applied_and_flagged(landing, con):
    put(landing, FULL)
    land_files(con, landing, sources=["reference"])
    put(landing, ONE_LESS)  # 1 of 20 keys: 5%, a normal edit
    land_files(con, landing, sources=["reference"])
    assert reference_warnings(con) == []

    put(landing, TRUNCATED)
    [version] = land_files(con, landing, sources=["reference"])["sku_crosswalk"].versions

    assert (version.keys, version.keys_before, version.keys_dropped) == (2, 19, 18)  # SH-1 kept
    assert version.mapping_drop
    assert staged_skus(con) == ["SH-0", "SH-1"]  # applied all the same
    [warning] = reference_warnings(con)
    assert warning.startswith("reference sku_crosswalk: version 3 (reference/sku_crosswalk.csv")
    assert warning.endswith("dropped 18 of the 19 keys of the previous version (95%)")

    put(landing, EDITED)  # fixed: the warning goes away
    land_files(con, landing, sources=["reference"])
    assert reference_warnings(con) == []


def test_reference_check_and_summary_warning(tmp_path, landing, monkeypatch):
    db = tmp_path / "w.duckdb"
    settings = SettingsResource(db_path=str(db), landing_dir=str(landing))
    [sku_check] = [c for c in reference_checks if "sku_crosswalk" in str(c.check_keys)]
    [sku_asset] = [a for a in file_assets if a.key.path == ["raw", "sku_crosswalk"]]

    def land_and_check(text: str):
        put(landing, text)
        result = dg.materialize([sku_asset, sku_check], resources={"settings": settings})
        [evaluation] = [
            e for e in result.get_asset_check_evaluations() if e.check_name == REFERENCE_CHECK
        ]
        return evaluation

    assert land_and_check(FULL).passed
    failed = land_and_check(TRUNCATED)

    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert (
        failed.metadata["keys_dropped"].value == 18 and failed.metadata["keys_before"].value == 20
    )

    monkeypatch.setenv("RETURNSYNC_DB", str(db))
    monkeypatch.setenv("RETURNSYNC_LANDING", str(landing))
    from pipelines.settings import Settings

    lines: list[str] = []
    print_summary(Settings.from_env(), lines.append)
    [warning] = [line for line in lines if line.startswith("WARNING")]
    assert "sku_crosswalk" in warning and "dropped 18 of the 20 keys" in warning


def test_other_sources_stay_content_addressed(landing, con):
    b2b = landing / "b2b"
    b2b.mkdir()
    text = "request_id,sku,quantity,status\n"
    (b2b / "a.csv").write_text(text + "B-1,S,1,approved\n")
    land_files(con, landing)
    (b2b / "a.csv").write_text(text + "B-2,S,1,approved\n")
    land_files(con, landing)
    (b2b / "a.csv").write_text(text + "B-1,S,1,approved\n")  # the first content again

    again = land_files(con, landing)["b2b_credit_requests"]

    assert (again.files_landed, again.files_skipped, again.rows) == (0, 1, 0)
    assert again.duplicate_lines == 2  # its header and its row, read before
    assert con.execute("select count(*) from raw.b2b_credit_requests").fetchone()[0] == 2


def test_crosswalk_content_at_the_other_crosswalk_path_is_not_a_version_of_it(landing, con):
    put(landing, "dc_code,erp_warehouse_code\nDC-1,WH-1\n", "warehouse_crosswalk.csv")
    land_files(con, landing)
    (landing / "reference" / "warehouse_crosswalk.csv").unlink()
    both = "channel,channel_sku,erp_product_code,dc_code,erp_warehouse_code\nb2b,S,P,DC-2,WH-2\n"
    put(landing, both)  # one file valid for both crosswalks: lands as the SKU crosswalk
    land_files(con, landing)
    (landing / "reference" / "sku_crosswalk.csv").rename(
        landing / "reference" / "warehouse_crosswalk.csv"
    )

    result = land_files(con, landing)["warehouse_crosswalk"]

    assert (result.files_skipped, result.versions) == (1, [])  # a duplicate, not a version
    assert current_versions(con)["warehouse_crosswalk"].keys == 1


def test_migration_makes_every_landed_reference_file_a_version(tmp_path):
    import duckdb

    db = duckdb.connect(str(tmp_path / "old.duckdb"))
    db.execute(migrations.BASELINE)
    db.execute(migrations.LEDGER_DDL)
    db.execute("insert into meta.schema_migrations values (1, 'baseline', current_timestamp)")
    db.execute(
        "insert into meta.files_landed values "
        "('s1', 'reference', 'reference/sku_crosswalk.csv', 3, 0, '2024-01-01'), "
        "('w1', 'reference', 'reference/warehouse_crosswalk.csv', 2, 0, '2024-01-01'), "
        "('s2', 'reference', 'reference/sku_crosswalk.csv', 4, 0, '2024-02-01'), "
        "('b1', 'b2b', 'b2b/a.csv', 4, 0, '2024-02-01')"
    )
    db.close()

    con = connect(tmp_path / "old.duckdb")
    got = con.execute(
        "select raw_table, version, sha256 from meta.reference_versions order by 1, 2"
    ).fetchall()

    assert got == [
        ("sku_crosswalk", 1, "s1"),
        ("sku_crosswalk", 2, "s2"),
        ("warehouse_crosswalk", 1, "w1"),
    ]
    assert {t: v.sha256 for t, v in current_versions(con).items()} == {
        "sku_crosswalk": "s2",
        "warehouse_crosswalk": "w1",
    }
