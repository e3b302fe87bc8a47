"""`returnsync replay` in file mode: re-ingest from a position, landing only what is missing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.lib import warehouse
from pipelines.lib.cdc import land
from pipelines.lib.cdc.files import land_cdc_files
from pipelines.lib.cdc.land import ParsedRecord, land_batch

TOPIC = "erp.public.product_product"
T0 = 1_700_000_000_000


def line(offset, partition=0, code=None):
    env = {
        "after": {"id": offset, "code": code or f"P{offset}"},
        "source": {"ts_ms": T0 + offset * 60_000},
        "op": "c",
        "ts_ms": T0 + offset * 60_000,
    }
    return json.dumps(
        {
            "topic": TOPIC,
            "partition": partition,
            "offset": offset,
            "key": {"id": offset},
            "value": env,
        }
    )


@pytest.fixture
def env(settings_env):
    """Landing dir with one CDC file of 6 records on partition 0 and 2 on partition 1."""
    cdc = settings_env.landing_dir / "cdc"
    cdc.mkdir()
    lines = [line(i) for i in range(6)] + [line(i, partition=1) for i in range(2)]
    (cdc / f"{TOPIC}.ndjson").write_text("\n".join(lines) + "\n")
    return settings_env


def rows(settings):
    with warehouse.connection(settings.db_path) as con:
        return con.execute(
            "select _partition, _offset from raw.erp_product_product order by all"
        ).fetchall()


def invoke(*args):
    result = CliRunner().invoke(main, ["replay", "--quiet", *args])
    return result


def test_replay_from_zero_changes_nothing(env):
    with warehouse.connection(env.db_path) as con:
        land_cdc_files(con, env.landing_dir, progress=False)
    before = rows(env)
    assert len(before) == 8
    result = invoke("--topic", TOPIC, "--from-offset", "0")
    assert result.exit_code == 0, result.output
    assert "0 rows landed" in result.output
    assert "already landed (skipped): 8" in result.output
    assert rows(env) == before


def test_replay_lands_missing_positions_from_an_offset(env):
    with warehouse.connection(env.db_path) as con:
        # only offsets 0-1 of partition 0 landed (e.g. from Kafka before the files existed)
        records = [
            ParsedRecord(TOPIC, 0, i, {"id": i}, json.loads(line(i))["value"]) for i in (0, 1)
        ]
        land_batch(con, records, source="kafka", connectors={})
    result = invoke("--topic", TOPIC, "--partition", "0", "--from-offset", "4")
    assert result.exit_code == 0, result.output
    assert "raw.erp_product_product: 2" in result.output
    assert rows(env) == [(0, 0), (0, 1), (0, 4), (0, 5)]


def test_replay_from_a_timestamp(env):
    at = "2023-11-14T22:16:20Z"  # T0 + 3 minutes: offset 3 on partition 0, nothing on partition 1
    result = invoke("--topic", TOPIC, "--from-timestamp", at)
    assert result.exit_code == 0, result.output
    assert rows(env) == [(0, 3), (0, 4), (0, 5)]


def test_replay_lands_former_dead_letters(env, monkeypatch):
    table = land.CDC_BY_TOPIC[TOPIC]
    monkeypatch.delitem(land.CDC_BY_TOPIC, TOPIC)  # the decoder does not know the topic yet
    with warehouse.connection(env.db_path) as con:
        assert land_cdc_files(con, env.landing_dir, progress=False).dead_letters == 8
    monkeypatch.setitem(land.CDC_BY_TOPIC, TOPIC, table)  # ... now it does
    kept = invoke("--topic", TOPIC, "--from-offset", "0", "--keep-dead-letters")
    assert kept.exit_code == 0 and "0 rows landed" in kept.output
    result = invoke("--topic", TOPIC, "--from-offset", "0")
    assert result.exit_code == 0, result.output
    assert "former dead letters landed: 8" in result.output
    assert len(rows(env)) == 8
    with warehouse.connection(env.db_path) as con:
        assert con.execute("select count(*) from meta.dead_letters").fetchone()[0] == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--topic", TOPIC], "exactly one of --from-offset and --from-timestamp"),
        (
            ["--topic", TOPIC, "--from-offset", "0", "--from-timestamp", "2024-01-01"],
            "exactly one of",
        ),
        (["--topic", TOPIC, "--from-timestamp", "yesterday"], "not an ISO-8601 time"),
    ],
)
def test_usage_errors(env, args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_no_cdc_files(settings_env):
    result = invoke("--topic", TOPIC, "--from-offset", "0")
    assert result.exit_code == 1
    assert "no CDC files" in result.output


@pytest.mark.kafka
def test_replay_from_kafka(settings_env, kafka_bootstrap, monkeypatch):
    from pipelines.lib.cdc.kafka.consumer import consume
    from pipelines.lib.cdc.kafka.producer import publish
    from pipelines.settings import Settings
    from tests.fixtures.kafka_broker import recreate_topics

    recreate_topics(kafka_bootstrap, [TOPIC], partitions=2)
    records = [json.loads(line(i, partition=i % 2)) for i in range(6)]
    assert publish(kafka_bootstrap, records, partitions=2) == 6
    monkeypatch.setenv("RETURNSYNC_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("RETURNSYNC_KAFKA_TOPICS", r"^erp\.public\.product_product$")
    settings = Settings.from_env()

    table = land.CDC_BY_TOPIC[TOPIC]
    monkeypatch.delitem(land.CDC_BY_TOPIC, TOPIC)  # the decoder does not know the topic yet
    assert consume(settings).dead_letters == 6
    monkeypatch.setitem(land.CDC_BY_TOPIC, TOPIC, table)

    result = invoke("--topic", TOPIC, "--from-offset", "0", "--keep-dead-letters")
    assert result.exit_code == 0, result.output
    assert "0 rows landed" in result.output and "already landed (skipped): 6" in result.output
    result = invoke("--topic", TOPIC, "--partition", "1", "--from-offset", "1")
    assert result.exit_code == 0, result.output
    assert "former dead letters landed: 2" in result.output  # partition 1, offsets 1 and 2
    assert rows(settings) == [(1, 1), (1, 2)]
    result = invoke("--topic", TOPIC, "--from-timestamp", "2020-01-01T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert "former dead letters landed: 4" in result.output
    assert len(rows(settings)) == 6
    again = invoke("--topic", TOPIC, "--from-offset", "0")
    assert "0 rows landed" in again.output and "already landed (skipped): 6" in again.output
