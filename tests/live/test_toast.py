"""Debezium's unavailable-value placeholder, made by the live stack (DESIGN §13, issue 22).

`account_invoice` stays at REPLICA IDENTITY DEFAULT on the live stack (scripts/stack/stack.py).
Through Tryton's JSON-RPC, as a person would: an invoice gets a long description of random text
(8,000 characters that PostgreSQL's compression cannot shrink below ~2 KB, so the value is stored
out of line, TOASTed); Debezium captures it; then only the invoice's reference is edited. The
update's row image has no description (PostgreSQL does not send an unchanged TOASTed value) and
Debezium writes its placeholder there. The test reads that event from Kafka (so it is known to
reach the case), lands the topics with `returnsync ingest`, builds the ERP staging models, and
checks that staging holds the real description, never the placeholder.

The cases the live stack cannot make on demand (a key whose first event carries the placeholder,
other tables) are in tests/dbt/test_erp_unavailable_values.py.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime

import pytest

from tests.dbt.cli import dbt
from tests.live.conftest import loop_module, stack_module

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.erp]

TOPIC = "erp.public.account_invoice"


def _tryton(env):
    from pipelines.lib.erp.tryton import TrytonClient

    client = TrytonClient(
        env["RETURNSYNC_ERP_URL"], env["RETURNSYNC_ERP_DATABASE"], env["RETURNSYNC_ERP_USER"],
        env["RETURNSYNC_ERP_PASSWORD"],
    )  # fmt: skip
    client.login()
    return client


def _events_of(bootstrap: str, invoice_id: int, until_reference: str, timeout: float = 180.0):
    """The change events of one invoice on Debezium's topic (payloads, in offset order), once
    the one that carries `until_reference` is there."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=20_000
    )
    try:
        deadline = time.monotonic() + timeout
        while not consumer.partitions_for_topic(TOPIC):
            assert time.monotonic() < deadline, f"Debezium never created {TOPIC}"
            time.sleep(1)
        parts = [TopicPartition(TOPIC, p) for p in consumer.partitions_for_topic(TOPIC)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        events: list[dict] = []
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                for record in batch:
                    if record.value is None:
                        continue
                    payload = json.loads(record.value)["payload"]
                    if (payload.get("after") or {}).get("id") == invoice_id:
                        events.append(payload)
            if any(e["after"].get("reference") == until_reference for e in events):
                return events
        raise AssertionError(f"Debezium did not capture the edit within {timeout:.0f} s: {events}")
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def toasted(live_stack, tmp_path_factory):
    env = live_stack.env()
    client = _tryton(env)
    tag = secrets.token_hex(4)
    (party,) = client.call(
        "party.party", "create",
        [{"name": f"Toast {tag}", "code": f"TOAST-{tag}", "addresses": [["create", [{}]]]}],
    )  # fmt: skip
    (address,) = client.call("party.address", "search", [("party", "=", party)], 0, 1, None)
    (journal,) = client.call("account.journal", "search", [("type", "=", "revenue")], 0, 1, None)
    (config,) = client.call("account.configuration", "read", [1], ["default_account_receivable"])
    (currency,) = client.call("currency.currency", "search", [("code", "=", "EUR")], 0, 1, None)
    (invoice,) = client.call(
        "account.invoice", "create",
        [{"type": "out", "party": party, "invoice_address": address, "currency": currency,
          "journal": journal, "account": config["default_account_receivable"],
          "reference": f"TOAST-{tag}-1", "description": "short"}],
    )  # fmt: skip
    # random URL-safe text: pglz finds nothing to shrink, so the value goes out of line
    long_text = secrets.token_urlsafe(6000)
    assert len(long_text) == 8000
    client.call("account.invoice", "write", [invoice], {"description": long_text})
    reference = f"TOAST-{tag}-2"
    client.call("account.invoice", "write", [invoice], {"reference": reference})
    (read,) = client.call("account.invoice", "read", [invoice], ["description", "reference"])
    assert (read["description"], read["reference"]) == (long_text, reference)

    events = _events_of(env["RETURNSYNC_KAFKA_BOOTSTRAP"], invoice, reference)

    work = tmp_path_factory.mktemp("toast")
    as_of = datetime.now(UTC).replace(microsecond=0).isoformat()
    landscape = loop_module().Loop(env, work, as_of)
    landscape.landing.mkdir(parents=True)  # no file drops: the ERP comes from Kafka alone
    landscape.cli("ingest", "--quiet")
    dbt(landscape.db, work, "run", "--select", "path:models/staging/erp")
    return {
        "invoice": invoice, "long_text": long_text, "reference": reference, "events": events,
        "loop": landscape,
    }  # fmt: skip


def test_the_stack_keeps_the_invoices_at_replica_identity_default(live_stack):
    identity = live_stack.pg.psql(
        "select relreplident from pg_class where relname = 'account_invoice'",
        stack_module().DATABASE,
    )
    assert identity.strip() == "d"


def test_debezium_sent_the_placeholder_for_the_unchanged_toasted_description(toasted):
    placeholder = stack_module().PLACEHOLDER
    events = toasted["events"]
    edit = next(e for e in events if e["after"]["reference"] == toasted["reference"])
    assert edit["op"] == "u"
    assert edit["after"]["description"] == placeholder
    # the value itself was captured once, by the update that set it
    carried = [e for e in events if e["after"]["description"] == toasted["long_text"]]
    assert len(carried) == 1 and carried[0]["op"] == "u"
    assert events.index(carried[0]) < events.index(edit)


def test_staging_holds_the_previous_real_value_not_the_placeholder(toasted):
    placeholder = stack_module().PLACEHOLDER
    loop, invoice = toasted["loop"], toasted["invoice"]
    # the placeholder did land in raw: staging is what replaces it
    assert loop.query(
        "select count(*) from raw.erp_account_invoice "
        f"where id = {invoice} and description = '{placeholder}'"
    ) == [(1,)]
    assert loop.query(
        "select description, reference, unavailable_columns from staging.stg_erp__invoices "
        f"where invoice_id = {invoice}"
    ) == [(toasted["long_text"], toasted["reference"], None)]
    # nowhere outside raw does the placeholder appear
    columns = loop.query(
        "select table_schema, table_name, column_name from information_schema.columns "
        "where table_schema not in ('raw', 'meta', 'information_schema', 'pg_catalog') "
        "and data_type = 'VARCHAR'"
    )
    assert any(t == "stg_erp__invoices" for _s, t, _c in columns)
    for schema, table, column in columns:
        found = loop.query(
            f'select count(*) from "{schema}"."{table}" where "{column}" = \'{placeholder}\''
        )
        assert found == [(0,)], (schema, table, column)
