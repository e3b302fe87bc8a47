"""`reason_code`: the kind of a dead letter, from its error text (DESIGN §3, §12; issue 23).

A dead letter's `error` names the field and what is wrong with it (e.g. `after.unit_price: out of
range for decimal(16,4): 1e+308`). Its reason code is the short, stable kind of that error, for
counts and queues. Both decoders give every dead letter through the same reference code
(`decode.py`, `files.parse_line`), so they give the same error and therefore the same code.

| code | what |
|---|---|
| `invalid_encoding` | a line that is not valid UTF-8 (or not valid in the file's BOM encoding) |
| `bad_json` | a line, key or value that is not JSON |
| `not_a_record` | JSON but no Kafka record: not an object, no or bad topic, partition, offset |
| `unknown_topic` | a topic returnsync has no raw table for |
| `missing_key` | no record key, or the key lacks the primary key |
| `missing_field` | a file-drop record without a required field |
| `bad_envelope` | no Debezium envelope: not an object, no row image, a bad `source` |
| `unknown_op` | an operation that is missing, unknown, or a logical decoding message (`m`) |
| `out_of_range` | a number or time beyond its column type (precision, BIGINT, years 1-9999) |
| `bad_number` | a decimal that is neither base64 nor a decimal string, NaN, an empty string |
| `bad_time` | a time or date that does not parse |
| `wrong_type` | a value of another JSON type than the column's |
| `too_deep` | nested deeper than can be stored |
| `undecodable` | the decoder itself failed (a bug: the record is kept, never lost) |
| `other` | anything else |

`returnsync ingest` prints the new dead letters of a run counted by code.
"""

from __future__ import annotations

import re

REASON_CODES = (
    "invalid_encoding",
    "bad_json",
    "not_a_record",
    "unknown_topic",
    "missing_key",
    "missing_field",
    "bad_envelope",
    "unknown_op",
    "out_of_range",
    "bad_number",
    "bad_time",
    "wrong_type",
    "too_deep",
    "undecodable",
    "other",
)

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (code, re.compile(pattern))
    for code, pattern in (
        ("invalid_encoding", r"^invalid_encoding"),
        ("undecodable", r"^value: undecodable"),
        ("bad_json", r"^((line|key|value): )?bad JSON"),
        ("missing_field", r"^missing required field"),
        ("unknown_topic", r"^topic: unknown topic"),
        ("not_a_record", r"^(line: expected a JSON object|topic: |partition: |offset: )"),
        ("missing_key", r"^key(\.[^:]+)?: (missing|is null)"),
        ("unknown_op", r"^op: "),
        ("too_deep", r"nested too deep"),
        ("out_of_range", r"out of range"),
        (
            "bad_number",
            r"bad (number|integer|decimal)|expected a number|bad VariableScaleDecimal|"
            r"Decimal scale",
        ),
        (
            "bad_time",
            r"bad (timestamp|date)|expected an ISO-8601|\((MicroTimestamp|Date|"
            r"Timestamp|NanoTimestamp|time of day)|expected a date",
        ),
        ("bad_envelope", r"^(value|after|before|source|message|ts_ms): (expected|missing)"),
        ("wrong_type", r"expected (a|an) "),
        ("missing_key", r"^key: expected"),
    )
)


def reason_code(error: str) -> str:
    """The reason code of a dead letter's error text (see the table in the module)."""
    for code, pattern in _RULES:
        if pattern.search(error):
            return code
    return "other"
