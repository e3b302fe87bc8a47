"""The simulator: determinism, contracts, and an answer key that is exact (DESIGN §5, §9)."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from kafka.partitioner.default import murmur2

from pipelines.lib.contracts import AMAZON_COLUMNS, CDC_TABLES
from returnsync_sim import SCENARIOS, SimOptions, simulate
from returnsync_sim.kafka import parse_line
from tests.simulate.oracle import analyse

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
AS_OF = datetime(2026, 11, 20, 12, 34, 56, tzinfo=UTC)


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def key_rows(landing: Path) -> set[tuple[str, str, str]]:
    return {
        (r["rule"], r["rma_number"], r["sku"])
        for r in read_csv(landing / "expected_mismatches.csv")
    }


def dead_rows(landing: Path) -> set[tuple[str, str]]:
    return {(r["source"], r["position"]) for r in read_csv(landing / "expected_dead_letters.csv")}


def cdc_records(landing: Path):
    for path in sorted((landing / "cdc").glob("*.ndjson")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                yield path, n, json.loads(line)
            except json.JSONDecodeError:
                yield path, n, None


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("landing")
    simulate(300, 11, out, AS_OF, SimOptions(fault_rate=0.3, wrapped_rate=0.3), progress=False)
    return out


def test_same_seed_gives_byte_identical_output(tmp_path):
    def digest(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    simulate(120, 3, tmp_path / "a", AS_OF, progress=False)
    simulate(120, 3, tmp_path / "b", AS_OF, progress=False)
    simulate(120, 4, tmp_path / "c", AS_OF, progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_rerun_into_the_same_directory_replaces_the_landscape(tmp_path):
    simulate(60, 1, tmp_path, AS_OF, progress=False)
    first = {p.name for p in tmp_path.rglob("*.tsv")}
    simulate(60, 1, tmp_path, AS_OF + timedelta(days=30), progress=False)
    second = {p.name for p in tmp_path.rglob("*.tsv")}
    assert first and second and not (first & second), "old Amazon reports must not linger"


@pytest.mark.parametrize(
    ("seed", "as_of", "fault_rate"),
    [
        (11, AS_OF, 0.3),
        (12, datetime(2026, 11, 20, 0, 0, 0, tzinfo=UTC), 0.5),  # as_of on a midnight
        (13, datetime(2027, 3, 1, 23, 59, 59, tzinfo=UTC), 0.5),  # a second before midnight
    ],
)
def test_answer_key_agrees_with_an_independent_reading_of_the_rules(
    tmp_path, seed, as_of, fault_rate
):
    simulate(300, seed, tmp_path, as_of, SimOptions(fault_rate=fault_rate), progress=False)
    found, dead, quarantined = analyse(tmp_path, as_of)
    assert found == key_rows(tmp_path)
    assert dead == dead_rows(tmp_path)
    summary = json.loads((tmp_path / "landscape.json").read_text())
    assert quarantined == [q["path"] for q in summary["quarantined"]]


def test_every_injected_fault_is_in_the_key_exactly_once_and_near_misses_are_not(landing):
    key = key_rows(landing)
    scenarios = read_csv(landing / "scenarios.csv")
    assert {s.name for s in SCENARIOS} <= {row["scenario"] for row in scenarios}
    expected: Counter = Counter()
    by_name = {s.name: s for s in SCENARIOS}
    for row in scenarios:
        scen = by_name[row["scenario"]]
        rows = [tuple(x.split(":", 1)) for x in row["expected"].split(";") if x]
        assert sorted(rule for rule, _ in rows) == sorted(scen.rules), row
        if scen.kind == "near_miss":
            assert not rows
            assert all(k[1] != row["rma_number"] for k in key), row
        for rule, sku in rows:
            expected[(rule, row["rma_number"], sku)] += 1
    assert set(expected) == key
    assert max(expected.values()) == 1
    summary = json.loads((landing / "landscape.json").read_text())
    assert sum(summary["scenarios"].values()) == len(scenarios)
    assert summary["expected_mismatch_rows"] == len(key)


def test_boundaries_are_exact(landing):
    """One second earlier the at-boundary faults vanish; an hour later the near misses fire."""
    names = {r["rma_number"]: r["scenario"] for r in read_csv(landing / "scenarios.csv")}
    key = key_rows(landing)
    earlier, _, _ = analyse(landing, AS_OF - timedelta(seconds=1))
    assert {names[k[1]] for k in key - earlier} == {
        "receipt_not_posted_at_boundary",
        "missing_credit_at_boundary",
        "unmatched_receipt_at_boundary",
        "stale_return_at_boundary",
    }
    assert earlier <= key
    later, _, _ = analyse(landing, AS_OF + timedelta(hours=1))
    assert {names.get(k[1]) for k in later - key} == {
        "nm_posting_grace",
        "nm_credit_grace",
        "nm_stale_grace",
        "nm_unmatched_grace",
    }


def test_clean_landscape_raises_nothing(tmp_path):
    for noise in (True, False):
        out = tmp_path / str(noise)
        summary = simulate(
            300, 5, out, AS_OF, SimOptions(fault_rate=0, noise=noise), progress=False
        )
        assert key_rows(out) == set()
        found, dead, quarantined = analyse(out, AS_OF)
        assert found == set()
        assert bool(dead) == noise and bool(quarantined) == noise
        assert summary["scenarios"] == {}


def test_dead_letters_point_at_undecodable_records(landing):
    dead = dead_rows(landing)
    assert {s for s, _ in dead} == {"cdc", "returns_saas", "shopify", "amazon", "b2b"}
    shas = {
        hashlib.sha256(p.read_bytes()).hexdigest(): p
        for p in landing.rglob("*")
        if p.is_file() and p.parent != landing
    }
    for source, position in dead:
        head, _, row = position.rpartition(":")
        if head in shas:
            assert int(row) >= 1
        else:
            assert source == "cdc" and head.count(":") == 1, position
    summary = json.loads((landing / "landscape.json").read_text())
    assert summary["dead_letters"] == len(dead)
    (quarantined,) = summary["quarantined"]
    header = (landing / quarantined["path"]).read_text().splitlines()[0]
    assert header.split(",")[0] == "request_no"
    sha = hashlib.sha256((landing / quarantined["path"]).read_bytes()).hexdigest()
    assert not any(p.startswith(sha) for _, p in dead), "a quarantined file is not dead-lettered"


def test_amazon_reports_have_amazons_exact_header(landing):
    files = sorted((landing / "amazon").glob("*.tsv"))
    assert len(files) >= 3
    for path in files:
        datetime.strptime(path.name, "returns_%Y-%m-%d.tsv")
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0].split("\t") == list(AMAZON_COLUMNS)
        assert all(len(line.split("\t")) == len(AMAZON_COLUMNS) for line in lines)
    rmas = Counter()
    for path in files:
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                rmas[(row["Amazon RMA ID"], row["Merchant SKU"])] += 1
    assert max(rmas.values()) >= 2, "successive reports overlap"


def test_shopify_refunds_are_shaped_like_shopifys(landing):
    fixture = json.loads((FIXTURES / "shopify" / "refund.json").read_text())["refund"]
    refunds = []
    for path in sorted((landing / "shopify").glob("*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                refunds.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a corrupted line, dead-lettered by design
    good = [
        r
        for r in refunds
        if isinstance(r, dict) and isinstance(r.get("id"), int) and "order_id" in r
    ]
    assert len(good) > 20
    fixture_keys = set(fixture) | {"processed_at"}
    statuses = Counter()
    for r in good:
        assert fixture_keys <= set(r)
        for rli in r["refund_line_items"]:
            assert set(fixture["refund_line_items"][0]) - {"line_item"} <= set(rli) | {"line_item"}
            assert {"id", "sku", "price", "title", "quantity"} <= set(rli["line_item"])
            assert {"subtotal", "total_tax", "restock_type"} <= set(rli)
        for tx in r["transactions"]:
            assert set(fixture["transactions"][0]) <= set(tx)
            statuses[tx["status"]] += 1
            assert str(tx["amount"]).count(".") == 1 and len(tx["amount"].split(".")[1]) == 2
    assert statuses["success"] and statuses["failure"]


def _envelope_keys(name: str) -> tuple[dict, dict | None]:
    doc = json.loads((FIXTURES / "debezium" / name).read_text())
    return (doc["payload"], doc["schema"]) if "payload" in doc else (doc, None)


def test_envelopes_look_like_debezium_bare_and_wrapped(landing):
    fixture, _ = _envelope_keys("pg_doc_update_payload.json")
    created, fixture_schema = _envelope_keys("pg_doc_create_schema_payload.json")
    source_fields = {
        f["field"] for f in fixture_schema["fields"] if f["field"] == "source" for f in f["fields"]
    }
    modes, times, ops, tombstones = Counter(), Counter(), Counter(), 0
    for _, _, rec in cdc_records(landing):
        if rec is None or not isinstance(rec["value"], (dict, type(None))):
            continue
        if rec["value"] is None:
            tombstones += 1
            continue
        value = rec["value"]
        env = value.get("payload", value)
        if "op" not in env or env["op"] not in "cudr":
            continue
        ops[env["op"]] += 1
        assert set(fixture) <= set(env) and set(fixture["source"]) <= set(env["source"])
        if env["op"] == "c":  # a create carries the real create's fields, with no row before
            assert set(created) <= set(env) and env["before"] is None
        assert env["source"]["connector"] == "postgresql"
        assert env["source"]["schema"] == "public"
        assert rec["topic"] == f"{env['source']['name']}.public.{env['source']['table']}"
        if "schema" in value:
            schema = value["schema"]
            assert schema["type"] == "struct" and schema["name"].endswith(".Envelope")
            fields = {f["field"]: f for f in schema["fields"]}
            assert {"before", "after", "source", "op", "ts_ms"} <= set(fields)
            assert source_fields <= {f["field"] for f in fields["source"]["fields"]}
            for f in fields["after"]["fields"]:
                name = f.get("name", f["type"])
                if name == "org.apache.kafka.connect.data.Decimal":
                    modes["precise"] += 1
                    assert f["parameters"]["scale"] in ("2", "3", "4")
                elif name == "io.debezium.data.VariableScaleDecimal":
                    modes["variable"] += 1
                elif name.startswith("io.debezium.time."):
                    times[name] += 1
            table = {t.topic: t for t in CDC_TABLES}[rec["topic"]]
            for f in fields["after"]["fields"]:
                if table.columns.get(f["field"], "").startswith("decimal(") and f["type"] in (
                    "string",
                    "double",
                ):
                    modes[f["type"]] += 1
    assert {"c", "u", "d", "r"} <= set(ops) and tombstones
    assert set(modes) == {"precise", "variable", "string", "double"}
    assert {
        "io.debezium.time.MicroTimestamp",
        "io.debezium.time.Timestamp",
        "io.debezium.time.ZonedTimestamp",
        "io.debezium.time.Date",
    } <= set(times)


def test_kafka_records_partitions_and_offsets(landing):
    connectors = json.loads((landing / "cdc" / "connectors.json").read_text())
    assert connectors == {
        "erp": {"decimal.handling.mode": "precise"},
        "wms": {"decimal.handling.mode": "string"},
    }
    offsets: dict[tuple[str, int], list[int]] = {}
    topics = Counter()
    for path, _, rec in cdc_records(landing):
        if rec is None:
            continue
        assert path.name == f"{rec['topic']}.ndjson"
        key = json.dumps(rec["key"], separators=(",", ":"), sort_keys=True).encode()
        assert rec["partition"] == (murmur2(key) & 0x7FFFFFFF) % 3
        offsets.setdefault((rec["topic"], rec["partition"]), []).append(rec["offset"])
        topics[rec["topic"]] += 1
    assert set(topics) == {t.topic for t in CDC_TABLES}
    for offs in offsets.values():
        assert offs == list(range(len(offs)))


def test_kafka_bytes_are_the_file_bytes(landing):
    path = landing / "cdc" / "erp.public.account_invoice.ndjson"
    for line in path.read_text(encoding="utf-8").splitlines()[:200]:
        parsed = parse_line(line)
        if parsed is None:
            continue
        topic, part, _key, value = parsed
        rec = json.loads(line)
        assert (topic, part) == (rec["topic"], rec["partition"])
        if isinstance(rec["value"], dict):
            assert json.loads(value) == rec["value"]
            assert value.decode() in line


def test_personal_data_is_there_to_be_kept_out_of_reports(landing):
    parties = [
        json.loads(line)
        for line in (landing / "cdc" / "erp.public.party_party.ndjson").read_text().splitlines()
    ]
    names = {p["value"].get("payload", p["value"])["after"]["name"] for p in parties}
    assert len(names) > 10 and all(" " in n for n in names)
    hook = json.loads(
        next((landing / "returns_saas").glob("*.ndjson"))
        .read_text(encoding="utf-8")
        .splitlines()[0]
    )
    customer = hook["payload"]["customer"]
    assert customer["email"].endswith("@example.com")
    assert f"{customer['first_name']} {customer['last_name']}" in names


def test_cli_writes_the_landscape(tmp_path):
    from pipelines.cli import main

    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--returns",
            "40",
            "--seed",
            "7",
            "--out",
            str(tmp_path),
            "--as-of",
            "2026-11-20T12:34:56Z",
            "--fault-rate",
            "0.5",
            "--no-noise",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["as_of"] == "2026-11-20T12:34:56Z" and summary["dead_letters"] == 0
    landscape = json.loads((tmp_path / "landscape.json").read_text())
    assert landscape["seed"] == 7 and landscape["returns"] == 40
    assert landscape["counts"]["file_records"]["reference"] > 0
    assert not landscape["options"]["noise"]
    bad = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path), "--as-of", "soon"])
    assert bad.exit_code != 0 and "ISO-8601" in bad.output


def test_options_select_scenarios(tmp_path):
    opts = replace(SimOptions(), scenarios=frozenset({"stale_return"}), fault_rate=1.0)
    simulate(30, 2, tmp_path, AS_OF, opts, progress=False)
    assert {r[0] for r in key_rows(tmp_path)} == {"stale_return"}
    with pytest.raises(ValueError, match="unknown scenarios"):
        simulate(
            1, 2, tmp_path, AS_OF, replace(opts, scenarios=frozenset({"nope"})), progress=False
        )


@pytest.mark.kafka
def test_publish_sends_the_file_records_to_kafka(kafka_bootstrap, tmp_path):
    """Same topics (here under a unique prefix), partitions, offsets, key and value bytes."""
    import uuid

    from kafka import KafkaConsumer, TopicPartition

    from returnsync_sim import publish

    simulate(40, 9, tmp_path, AS_OF, progress=False)
    prefix = f"simtest-{uuid.uuid4().hex[:8]}."
    expected: dict[tuple[str, int], list[tuple[int, bytes, bytes | None]]] = {}
    for path in sorted((tmp_path / "cdc").glob("*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            parsed = parse_line(line)
            if parsed is not None:
                topic, part, key, value = parsed
                offset = json.loads(line)["offset"]
                expected.setdefault((prefix + topic, part), []).append((offset, key, value))
    counts = publish(tmp_path, kafka_bootstrap, progress=False, topic_prefix=prefix)
    assert sum(counts.values()) == sum(len(v) for v in expected.values())
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        parts = [TopicPartition(t, p) for t, p in expected]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        got: dict[tuple[str, int], list] = {k: [] for k in expected}
        want = sum(len(v) for v in expected.values())
        polls = 0
        while sum(len(v) for v in got.values()) < want and polls < 600:
            polls += 1
            for tp, recs in consumer.poll(timeout_ms=500).items():
                got[(tp.topic, tp.partition)] += [(r.offset, r.key, r.value) for r in recs]
    finally:
        consumer.close()
    assert got == expected
