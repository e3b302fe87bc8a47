"""The raw contracts, the warehouse DDL and dbt's sources must describe the same tables."""

from pathlib import Path

import yaml

from pipelines.lib.contracts import (
    AMAZON_COLUMNS,
    CDC_TABLES,
    CHANNEL_UNIONS,
    DBT_SOURCES_PATH,
    FILE_SOURCES,
    FORMATS,
    GENERATED,
    all_raw_tables,
    channel_models,
)
from pipelines.lib.warehouse import connect, initialize
from pipelines.settings import DBT_PROJECT_DIR


def test_dbt_sources_match_contracts():
    sources = yaml.safe_load((DBT_PROJECT_DIR / "models/staging/_sources.yml").read_text())
    (raw,) = [s for s in sources["sources"] if s["name"] == "raw"]
    assert {t["name"] for t in raw["tables"]} == set(all_raw_tables())


def test_warehouse_creates_every_raw_table_idempotently(tmp_path):
    db = tmp_path / "wh.duckdb"
    initialize(db)
    initialize(db)  # second time: nothing changes, nothing fails
    con = connect(db, read_only=True)
    tables = {
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'"
        ).fetchall()
    }
    assert tables == set(all_raw_tables())
    cols = [
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'raw' and table_name = 'amazon_returns' order by ordinal_position"
        ).fetchall()
    ]
    con.close()
    assert cols[-len(AMAZON_COLUMNS) :] == [name for name, _ in AMAZON_COLUMNS.values()]


def test_bare_envelope_scales_come_from_the_contract():
    by_name = {t.raw_table: t for t in CDC_TABLES}
    assert by_name["erp_sale_line"].scale("unit_price") == 4
    assert by_name["erp_account_invoice"].scale("total_amount_cache") == 2
    assert by_name["wms_receipts"].scale("quantity") == 3
    assert by_name["erp_sale_line"].scale("quantity") is None  # a double, not a decimal
    assert {t.topic for t in CDC_TABLES} >= {"erp.public.sale_sale", "wms.public.inspections"}
    assert all(f.required and set(f.required) <= set(f.columns) for f in FILE_SOURCES)


def test_the_generated_dbt_files_are_up_to_date():
    """`models/staging/_sources.yml`, `models/staging/_channel_models.yml` and
    `macros/generated/channel_models.sql` are written from the registry; regenerate them with
    `python -m pipelines.lib.contracts` (make sources-yml) after changing a contract."""
    assert set(GENERATED) == {
        DBT_SOURCES_PATH,
        "models/staging/_channel_models.yml",
        "macros/generated/channel_models.sql",
    }
    for rel, render in GENERATED.items():
        committed = (DBT_PROJECT_DIR / rel).read_text(encoding="utf-8")
        assert committed == render(), (
            f"dbt_project/{rel} is out of date: run `.venv/bin/python -m pipelines.lib.contracts`"
        )
    committed = (DBT_PROJECT_DIR / DBT_SOURCES_PATH).read_text(encoding="utf-8")
    raw = yaml.safe_load(committed)["sources"][0]["tables"]
    meta = {t["name"]: t["config"]["meta"] for t in raw}
    assert {n for n, m in meta.items() if m["kind"] == "file"} == {
        f.raw_table for f in FILE_SOURCES
    }
    assert meta["amazon_returns"] == {
        "kind": "file", "source": "amazon", "format": "tsv", "channel": "amazon"
    }  # fmt: skip


def test_every_file_source_has_a_parser_and_a_staging_folder():
    for f in FILE_SOURCES:
        assert f.format in FORMATS, f"{f.raw_table}: no parser for .{f.format}"
        staging = DBT_PROJECT_DIR / "models" / "staging" / f.folder
        assert staging.is_dir(), f"{f.raw_table}: no staging folder {staging}"
        assert any(f"source('raw', '{f.raw_table}')" in p.read_text() for p in
                   staging.glob("*.sql")), f"no staging model reads raw.{f.raw_table}"  # fmt: skip
        checked = {*f.value_sets, *f.positive, *f.non_negative, *f.not_null}
        assert checked <= set(f.columns), f.raw_table


def test_the_channel_unions_are_the_registrys_channel_models(dbt_manifest):
    """Each channel source (`channel` in the registry) maps itself into the unions' shape in its
    own staging folder, one model per union, under a dbt contract of exactly CHANNEL_UNIONS'
    columns and types; each union reads exactly those models (a loop over the generated
    `channel_models(union)`), and through them exactly the channel sources' raw tables."""
    import json

    manifest = json.loads(Path(dbt_manifest).read_text())
    nodes = manifest["nodes"]
    models = {n["name"]: n for n in nodes.values() if n["resource_type"] == "model"}
    channel_sources = [f for f in FILE_SOURCES if f.channel]
    assert [f.raw_table for f in channel_sources] == [
        "returns_saas_webhooks", "amazon_returns", "b2b_credit_requests"
    ]  # fmt: skip
    for union, columns in CHANNEL_UNIONS.items():
        names = channel_models(union)
        assert names == [f"stg_{f.folder}__channel_{union}" for f in channel_sources]
        for f, name in zip(channel_sources, names, strict=True):
            node = models[name]
            assert node["original_file_path"] == f"models/staging/{f.folder}/{name}.sql"
            assert node["config"]["contract"]["enforced"] is True, name
            declared = {c: v["data_type"] for c, v in node["columns"].items()}
            assert list(declared.items()) == list(columns.items()), name

        (node,) = [m for m in models.values() if m["name"] == f"int_channel_{union}_unioned"]
        parents = {p.split(".")[-1] for p in node["depends_on"]["nodes"] if p.startswith("model.")}
        parents -= {"int_returns_touched", "stg_reference__sku_crosswalks"}  # scope; SKU mapping
        assert parents == set(names), f"int_channel_{union}_unioned reads {sorted(parents)}"
        if union == "returns":  # passed through as they are: its documented columns are the shape
            assert list(node["columns"]) == list(columns)

        read: set[str] = set()
        todo = [p for p in node["depends_on"]["nodes"] if p.split(".")[-1] in names]
        while todo:  # through staging models (one may read another) down to the raw sources
            parent = todo.pop()
            if parent.startswith("source."):
                read.add(manifest["sources"][parent]["name"])
            elif parent.startswith("model.") and nodes[parent]["name"].startswith("stg_"):
                todo += nodes[parent]["depends_on"]["nodes"]
        assert read == {f.raw_table for f in channel_sources}, (
            f"int_channel_{union}_unioned reads {sorted(read)} through its channel models"
        )
