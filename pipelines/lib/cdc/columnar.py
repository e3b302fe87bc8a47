"""Column-wise decoding of CDC NDJSON files with DuckDB's JSON reader (DESIGN §3, §10; issue 23).

The per-record decoder (`decode.TableDecoder`, driven by `land.decode_batch`) is the reference:
what it lands, and what it dead-letters with which reason, is the contract. This module decodes
the same lines column-wise, in SQL, and is exactly as strict, by construction:

- A chunk of lines (`read_chunks`: whole lines, cut at newlines, never more than `CHUNK_BYTES`)
  becomes an Arrow string column without copying; DuckDB parses each line with `json_transform`
  into typed parts (JSON text per field) and does every Debezium conversion in SQL: precise
  decimals from base64 two's-complement bytes with the column's (or the schema's) scale, string
  and double decimal modes, `VariableScaleDecimal`, `MicroTimestamp`/`Timestamp` (ms)/`Date`/
  `ZonedTimestamp`, tombstones (bare and JsonConverter), ops `c`/`u`/`d`/`r`/`t`, schema-wrapped
  and bare envelopes.
- A line is decoded in SQL only when every check passes that makes its result certain: valid
  UTF-8, JSON that orjson would read the same way (no NaN/Infinity, no trailing commas, no
  exponents beyond a double, no object with a key twice at a level the decoder reads, no nesting
  deeper than orjson reads), values of exactly the JSON type the reference accepts and within
  range, decimal strings and floats that need no rounding, ISO times of the plain forms, a key
  `{"<pk>": <integer>}`, columns beyond the contract only with plain values (integers, booleans,
  null, strings without escapes: written as orjson writes them). Any other line is handed, as
  its bytes, to the reference decoder (`files.parse_line` + `land.decode_batch`), which decides:
  it lands it or dead-letters it with its own reason. Every dead letter therefore comes from the
  reference code, with the same position and the same `reason_code` (`reasons.reason_code`).
- The result is a `land.DecodedBatch` (Arrow rows per raw table + dead letters), landed by
  `land.land_decoded`: the same transaction, ledger and idempotency as every other CDC batch.

`tests/cdc/test_columnar_diff.py` lands fixtures, real Debezium samples, the hostile corpus and
simulated landscapes both ways and requires identical raw tables, ledgers and dead letters.
"""

from __future__ import annotations

import json
import warnings
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import duckdb
import numpy as np
import pyarrow as pa

from pipelines.lib.cdc import decode as dec
from pipelines.lib.cdc.land import (
    _META_ORDER,
    _META_TYPES,
    DecodedBatch,
    ParsedRecord,
    decode_batch,
)
from pipelines.lib.coltypes import arrow_type, decimal_type
from pipelines.lib.contracts import CDC_BY_TOPIC, CdcTable
from pipelines.lib.warehouse import DeadLetter, memory_limit

CHUNK_BYTES = 16 << 20  # bytes of whole lines per chunk (a transaction each)
# DuckDB's share while a chunk is decoded: the query holds ~100 MB of working memory whatever the
# chunk's size (measured: it fails at 128 MB with 8 MB chunks, passes at 256 MB with 32 MB ones);
# landing itself keeps `warehouse.LANDING_MEMORY_LIMIT`. Peak RSS: bench/memory_cdc.py.
DECODE_MEMORY_LIMIT = "256MB"
LONG_LINE = 256 << 10  # longer lines go to the reference decoder (DuckDB's memory stays bounded)

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1

# Lines orjson refuses (or reads otherwise) that DuckDB's reader would accept: NaN/Infinity
# literals, trailing commas, a leading '+' or zero, exponents beyond a double. A match only sends
# the line to the reference decoder (false positives in strings cost speed, never correctness).
# (each regex apart, so that DuckDB's regex engine skips ahead to its rare first byte; NaN and
# Infinity only on the lines where an ASCII-lower-cased copy of the chunk has "nan" or "inf",
# found in Python (`_lines_with`: DuckDB's lower() of every line cost 2 µs a line); a run of 25
# digits likewise, in the same copy with its digits translated to "#")
_RISKY_COMMA = r",\s*[}\]]"  # a trailing comma
_RISKY_EXP = r"[eE][+-]?[0-9]{3}"  # an exponent that may be beyond a double (orjson refuses inf)
# ... in a number (DuckDB's reader takes only JSON's numbers, after ':', ',' or '[' and JSON
# whitespace): checked where the cheap one matched, so that strings like a tracking number
# "1Z8E654E..." do not send a line to the reference (14% of the WMS receipts did). In a CASE: an
# AND evaluates both sides on every row (this regex, starting at every ':' and ',', 3 us a line)
_RISKY_EXP_NUMBER = r"[:,\[]\s*-?[0-9.]+[eE][+-]?[0-9]{3}"
_LONG_NUMBER = b"#" * 25  # a run of digits that may be a number beyond a double
# one pass over a chunk for both scans: digits to "#", ASCII letters lower-cased
_SCAN_TABLE = bytes.maketrans(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"#" * 10 + b"abcdefghijklmnopqrstuvwxyz"
)
# NaN, Inf, Infinity (any case), which DuckDB's reader takes, as a value: before a delimiter
_RISKY_NAN = r"[:,\[]\s*[-+]?(?:[nN][aA][nN]|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)\s*[,}\]]"
_INT = "-?[0-9]{1,20}"
_B64 = "(?:[A-Za-z0-9+/]{4}){0,2}(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)"
# any base64 that Python's strict decoder takes (then a precise decimal string is read as bytes)
_B64_ANY = "(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)"
_ISO = (
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])"
    r"(?:\.([0-9]{1,6}))?(Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
)
_ENV = (
    '{"schema":"JSON","payload":"JSON","op":"JSON","after":"JSON","source":"JSON","ts_ms":"JSON"}'
)
_LINE = '{"topic":"JSON","partition":"JSON","offset":"JSON","key":"JSON","value":"JSON"}'


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- schema-wrapped envelopes: one conversion code per contract column and schema ----------------

_TIME_CODES = {
    "io.debezium.time.MicroTimestamp": "micro",
    "io.debezium.time.Timestamp": "milli",
    "org.apache.kafka.connect.data.Timestamp": "milli",
    "io.debezium.time.ZonedTimestamp": "zoned",
}
_DATE_NAMES = ("io.debezium.time.Date", "org.apache.kafka.connect.data.Date")


def schema_codes(table: CdcTable, schema_text: str) -> list[str]:
    """For a JsonConverter schema: how each contract column of `after` is decoded ('plain',
    'dec:<scale>', 'vsd', 'micro', 'milli', 'zoned', 'date') or 'no' (the reference decides)."""
    try:
        schema = json.loads(schema_text)
        fields = dec._field_schemas(schema, "after")
    except Exception:
        return ["no"] * len(table.columns)
    codes = []
    for name, kind in table.columns.items():
        f = fields.get(name)
        if f is None:
            codes.append("plain")
            continue
        logical = f.get("name") or ""
        is_dec = decimal_type(kind) is not None
        if logical in dec._LOGICAL:
            if logical == "org.apache.kafka.connect.data.Decimal" and is_dec:
                params = f.get("parameters") or {}
                try:
                    k = int(params.get("scale", 0))
                except (TypeError, ValueError):
                    codes.append("no")
                    continue
                codes.append(f"dec:{k}" if 0 <= k <= decimal_type(kind)[1] else "no")
            elif logical == "io.debezium.data.VariableScaleDecimal" and is_dec:
                codes.append("vsd")
            elif logical in _TIME_CODES and kind in ("timestamp", "timestamptz"):
                codes.append(_TIME_CODES[logical])
            elif logical in _DATE_NAMES and kind == "date":
                codes.append("date")
            else:
                codes.append("no")
        elif f.get("type") in ("bytes", "struct", "array", "map"):
            codes.append("no")
        else:
            codes.append("plain")
    return codes


# -- SQL for one column --------------------------------------------------------------------------


def _is_int(x: str) -> str:
    return f"regexp_full_match({x}, '{_INT}')"


def _str(x: str) -> str:
    """The string value of a JSON string text (unescaped only when it has escapes)."""
    return (
        f"(case when contains({x}, '\\') then json_extract_string({x}, '$') "
        f"else substr({x}, 2, length({x}) - 2) end)"
    )


def _is_str(x: str) -> str:
    return f"starts_with({x}, '\"')"


def _signed(b: str) -> str:
    """Signed big-endian two's-complement integer (HUGEINT) of a BLOB of 1-8 bytes, else NULL."""
    u = f"('0x' || hex({b}))::hugeint"
    n = f"octet_length({b})"
    return (
        f"(case when {n} between 1 and 8 then (case when {u} >= (1::hugeint << (8 * {n} - 1)) "
        f"then {u} - (1::hugeint << (8 * {n})) else {u} end) end)"
    )


def _dec_str(s: str, scale: int) -> str:
    """Unscaled HUGEINT of a plain decimal string needing no rounding at `scale`, else NULL."""
    frac = f"(?:\\.[0-9]{{1,{scale}}})?" if scale else ""
    return (
        f"(case when regexp_full_match({s}, '-?[0-9]{{1,18}}{frac}') then "
        f"cast(cast({s} as decimal(38,{scale})) * {10**scale} as hugeint) end)"
    )


def _dec_float(x: str, scale: int) -> str:
    """A JSON float (its shortest text): exact at `scale` with <= 15 significant digits."""
    frac = f"\\.[0-9]{{1,{scale}}}" if scale else "\\.0"
    return (
        f"(case when regexp_full_match({x}, '-?[0-9]{{1,15}}{frac}') and "
        f"length(regexp_replace({x}, '^-?0*|\\.', '', 'g')) <= 15 then "
        f"cast(cast({x} as decimal(38,{scale})) * {10**scale} as hugeint) end)"
    )


def _vsd_map(x: str) -> str:
    """A `VariableScaleDecimal` object's fields (JSON text by key), for `_vsd`; else NULL.

    Computed once per column in its own CASE: written into `_vsd`'s branches, DuckDB's
    common-subexpression pass took the repeated `try(json_transform(...))` out of them and ran it
    on every row, failing on every string (and `try` then redoes the vector row by row): 1.5-2 us
    a line per decimal column, for a branch no line took."""
    parsed = f"try(json_transform({x}, '\"MAP(VARCHAR, JSON)\"'))"
    return f"(case when starts_with({x}, '{{') then {parsed} end)"


def _vsd(m: str, scale: int) -> str:
    """`VariableScaleDecimal` object {scale, value} (`m`: its `_vsd_map`) -> unscaled HUGEINT at
    `scale`, else NULL."""
    sc = f"{m}['scale']"
    val = f"{m}['value']"
    b = f"from_base64({_str(val)})"
    return (
        f"(case when regexp_full_match({sc}, '[0-9]{{1,2}}') and {sc}::int <= {scale} "
        f"and {_is_str(val)} and regexp_full_match({_str(val)}, '{_B64_ANY}') "
        f"then {_signed(b)} * (10::hugeint ** ({scale} - {sc}::int))::hugeint end)"
    )


_MACROS = """
create or replace temp macro __cdc_iso(g) as (
    case when g.y <> '' and g.y::int >= 1 then (
        epoch_us(try(make_timestamp(g.y::bigint, g.mo::bigint, g.d::bigint,
                                    g.h::bigint, g.mi::bigint, g.s::double)))
        + (case when g.f = '' then 0 else rpad(g.f, 6, '0')::bigint end)
        - (case when g.z in ('', 'Z') then 0
           else (case when left(g.z, 1) = '-' then -1 else 1 end)
                * (substr(g.z, 2, 2)::bigint * 3600 + substr(g.z, 5, 2)::bigint * 60)
                * 1000000 end)
    ) end);
"""


# The form Debezium writes (`ZonedTimestamp` in UTC, whole seconds): read by `strptime` (0.2 us)
# instead of the general form's regex groups and `make_timestamp` (3 us a value). The regex
# leaves only the calendar to `strptime` (Feb 30 is NULL there and refused by `fromisoformat`:
# the reference decides); years 0001-0999 take the general path.
_ISO_UTC = r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z"


def _iso_groups(s: str) -> str:
    """The general ISO form's parts of `s` (for `_iso_us`), where the UTC form does not match."""
    return (
        f"(case when {s} is not null and not regexp_full_match({s}, '{_ISO_UTC}') then "
        f"regexp_extract({s}, '^{_ISO}$', ['y','mo','d','h','mi','s','f','z']) end)"
    )


def _iso_us(s: str, groups: str | None = None) -> str:
    """µs since the epoch (UTC) of an ISO-8601 time of the plain forms, else NULL. `groups`: a
    column holding `_iso_groups(s)` (the macro repeats its argument 11 times: a column there
    instead of the regex costs DuckDB 5-10 ms less to bind, every chunk)."""
    general = f"__cdc_iso({groups or _iso_groups(s)})"
    return (
        f"(case when regexp_full_match({s}, '{_ISO_UTC}') "
        f"then epoch_us(try_strptime({s}, '%Y-%m-%dT%H:%M:%SZ')) else {general} end)"
    )


@dataclass
class _Col:
    pre: str  # SQL of a helper value computed before `value` (or '' if none), as p<i>
    value: str  # SQL of the value (HUGEINT unscaled for decimals, µs, days; or the text)
    ok: str  # SQL over v<i>: the value is within its type
    vsd_map: str = ""  # SQL of `_vsd_map` for `value` (or '' if none), as q<i>
    # (name, SQL) of values `value` reads, computed before it over p<i>/q<i>: a large expression
    # written once there instead of into several CASE branches (binding the query costs DuckDB
    # ~0.1 ms an expression node, every chunk: the VariableScaleDecimal branches 13-15 ms)
    helpers: tuple[tuple[str, str], ...] = ()


def _column(i: int, kind: str, mode: str, seen: frozenset[str] = frozenset()) -> _Col:
    """SQL for contract column i, read from x<i> (its JSON text, NULL if absent or null), s<i>
    (its string value if it is a JSON string) and c<i> (the row's conversion code: 'bare' for
    bare envelopes, else from `schema_codes`)."""
    x, sv, code, v = f"x{i}", f"s{i}", f"c{i}", f"v{i}"
    isnum = f"regexp_full_match({x}, '-?[0-9][0-9.eE+-]*')"
    if kind in ("bigint", "integer"):
        lo, hi = (_I64_MIN, _I64_MAX) if kind == "bigint" else (-(2**31), 2**31 - 1)
        val = (
            f"(case when {code} in ('bare', 'plain') and {_is_int(x)} "
            f"then try_cast({x} as hugeint) end)"
        )
        return _Col("", val, f"{v} between {lo} and {hi}")
    if kind == "varchar":
        return _Col(
            "", f"(case when {code} in ('bare', 'plain') then {sv} end)", f"{v} is not null"
        )
    if kind == "boolean":
        val = (
            f"(case when {code} in ('bare', 'plain') and {x} in ('true', 'false') "
            f"then {x} = 'true' end)"
        )
        return _Col("", val, f"{v} is not null")
    if kind == "double":
        val = (
            f"(case when {code} in ('bare', 'plain') and {isnum} and "
            f"(not {_is_int(x)} or try_cast({x} as bigint) is not null) "
            f"then try_cast({x} as double) end)"
        )
        return _Col("", val, f"{v} is not null")
    dt = decimal_type(kind)
    if dt:
        p, s = dt
        b64 = f"p{i}"  # signed integer of the string's base64 bytes, if it is base64
        pre = (
            f"(case when regexp_full_match({sv}, '{_B64_ANY}') "
            f"then {_signed(f'from_base64({sv})')} end)"
        )
        is_b64 = f"regexp_full_match({sv}, '{_B64_ANY}')"
        from_str_bare = (
            f"(case when {is_b64} then {b64} else {_dec_str(sv, s)} end)"
            if mode == "precise"
            else _dec_str(sv, s)
        )
        from_int = f"(case when length({x}) <= 19 then {x}::hugeint * {10**s} end)"
        from_float = _dec_float(x, s)
        vsd = f"r{i}"  # _vsd(q<i>), a helper
        plain = (
            f"(case when {sv} is not null then @STR@ when starts_with({x}, '{{') then {vsd} "
            f"when {_is_int(x)} then {from_int} else {from_float} end)"
        )
        wrapped_dec = "".join(
            f"when {code} = 'dec:{k}' then (case when {sv} is not null then "
            f"{b64} * {10 ** (s - k)} when {_is_int(x)} then {from_int} "
            f"when starts_with({x}, '{{') then null else {from_float} end) "
            for k in range(s + 1)
            if f"dec:{k}" in seen  # only the scales of the schemas seen (a smaller plan)
        )
        val = (
            f"(case when {code} = 'bare' then {plain.replace('@STR@', from_str_bare)} "
            + (
                f"when {code} = 'plain' then {plain.replace('@STR@', _dec_str(sv, s))} "
                if "plain" in seen
                else ""
            )
            + f"{wrapped_dec}"
            + (f"when {code} = 'vsd' then {vsd} " if "vsd" in seen else "")
            + "end)"
        )
        lim = 10**p
        return _Col(
            pre, val, f"{v} > -{lim} and {v} < {lim}", _vsd_map(x), ((vsd, _vsd(f"q{i}", s)),)
        )
    if kind == "date":
        val = (
            f"(case when {code} in ('bare', 'plain', 'date') and {_is_int(x)} "
            f"then try_cast({x} as hugeint) end)"
        )
        return _Col("", val, f"{v} between {dec._DAYS_MIN} and {dec._DAYS_MAX}")
    if kind in ("timestamp", "timestamptz"):
        iv = f"(case when {_is_int(x)} then try_cast({x} as hugeint) end)"
        int_codes = "('bare', 'plain', 'micro')" if kind == "timestamp" else "('micro')"
        val = (
            f"(case when {sv} is not null then (case when {code} in ('bare', 'plain', 'zoned') "
            f"then {_iso_us(sv, f'g{i}')} end) "
            f"when {code} in {int_codes} then {iv} "
            f"when {code} = 'milli' then {iv} * 1000 end)"
        )
        return _Col(
            "",
            val,
            f"{v} between {dec._US_MIN} and {dec._US_MAX}",
            helpers=((f"g{i}", _iso_groups(sv)),),
        )
    raise ValueError(f"no column-wise decoder for {kind!r}")


_KINDS = {"bigint", "integer", "varchar", "boolean", "double", "date", "timestamp", "timestamptz"}


def _supported(table: CdcTable) -> bool:
    return table.columns[table.primary_key] == "bigint" and all(
        k in _KINDS or (decimal_type(k) is not None and decimal_type(k)[0] <= 18)
        for k in table.columns.values()
    )


_MAP_TYPE = "MAP(VARCHAR, JSON)"
# No JSON type of the levels is asked for (a third parse of the line, 1.5 us): the record is an
# object (its first byte is '{' and it parsed), the envelope or payload is null or absent where
# the parsed struct is NULL, and any other value without keys (an array, a string, a number, {})
# has an empty key list below: the reference decides those (as it did for {}, which has no op).
# the levels whose keys are listed (a key given twice there: the reference decides): the record,
# the envelope, its payload, and `source` of either (its three fields come from the line's first
# parse: rendering it as text, parsing that again and a regex for its keys cost ~2 us a line; a
# `source` with no keys, {} or no object, goes to the reference)
_KEY_PATHS = "['$', '$.value', '$.value.payload', '$.value.source', '$.value.payload.source']"
# orjson refuses nesting deeper than 1024; a line that could be that deep (as long as 2 bytes a
# level, that many brackets) goes to the reference
_DEEP, _DEEP_LEN = 1000, 2000


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# The extra `after` columns are written by SQL only when orjson would write them the same way: an
# object of plain keys whose values are integers, booleans, null or strings without escapes.
_SIMPLE_VALUE = '(?:-?[0-9]{1,18}|true|false|null|"[^"\\\\]*")'
_SIMPLE_EXTRA = f'\\{{"[A-Za-z0-9_]+":{_SIMPLE_VALUE}(?:,"[A-Za-z0-9_]+":{_SIMPLE_VALUE})*\\}}'


def _unique(x: str, known: Sequence[str] = ()) -> str:
    """SQL: the list of keys `x` has no key twice. `len(list_distinct(...))` costs ~2 us a line on
    a 13-key row image (hash tables per row), so a list equal to `known` (keys without a repeat,
    as a line of the topic had them) is taken as it is, and only the others are counted."""
    counted = f"len({x}) = len(list_distinct({x}))"
    if not known or len(set(known)) != len(known):
        return f"({counted})"
    return f"(case when {x} = [{', '.join(_q(k) for k in known)}] then true else {counted} end)"


@dataclass(frozen=True)
class KnownKeys:
    """The keys, in order, of a record, its envelope and its row image as a line of the topic
    had them (learned from the first lines of a chunk; they only make the key checks cheaper)."""

    record: tuple[str, ...] = ()
    envelope: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    source: tuple[str, ...] = ()


def table_sql(
    table: CdcTable,
    mode: str,
    codes: Mapping[str, list[str]],
    lines_sql: str,
    known: KnownKeys = KnownKeys(),
) -> str:
    """The query decoding one chunk's lines of `table`'s topic. Output per line: `lineno`,
    `st` (0 decoded, 1 the reference decides, 2 another topic: `other_topic` says which, 3 a
    schema not seen yet: `schema_text`), and for st 0 the raw row (metadata, then contract
    columns as SQL values: unscaled decimals, µs, days, ms).

    Each line is parsed twice, each a single pass of DuckDB's JSON reader: once into the parts
    the decoder reads (`json_transform`: the record's fields, the row image and `source` as JSON
    text), once for the keys of the record, the envelope and its payload (`json_keys`, to find a
    key given twice); the row image and `source` are parsed again small. Everything else works
    on those short texts: no per-column parse of the line and no lambda on the usual rows.
    DuckDB evaluates every term of an AND or OR on every row: a term that costs is put in a
    CASE, which evaluates a branch only on the rows that reach it.
    """
    names = list(table.columns)
    pk = table.primary_key
    cols = [
        _column(i, k, mode, frozenset(cs[i] for cs in codes.values()))
        for i, k in enumerate(table.columns.values())
    ]
    col_list = "[" + ", ".join(_q(n) for n in names) + "]"
    # a row image with keys the contract does not name (list_has_all: ~1 us a line; the known
    # key list's answer is a constant)
    has_extra = f"ak is not null and not list_has_all({col_list}, ak)"
    if known.after and len(set(known.after)) == len(known.after):
        constant = "true" if set(known.after) - set(names) else "false"
        known_list = "[" + ", ".join(_q(k) for k in known.after) + "]"
        has_extra = f"(case when ak = {known_list} then {constant} else {has_extra} end)"
    code_sel = ", ".join(
        f"coalesce(codes[{i + 1}], case when wrapped_schema is null then 'bare' end) as c{i}"
        for i in range(len(names))
    )
    x_sel = ", ".join(
        f"ax.{_ident(n)} as x{i}, case when {_is_str(f'ax.{_ident(n)}')} then "
        f"{_str(f'ax.{_ident(n)}')} end as s{i}"
        for i, n in enumerate(names)
    )
    after_spec = json.dumps({n: "JSON" for n in names})
    no_columns = json.dumps({n: None for n in names}, separators=(",", ":"))
    source = {"lsn": "JSON", "ts_ms": "JSON", "txId": "JSON"}
    env_s = {"op": "JSON", "after": "JSON", "source": source, "ts_ms": "JSON"}
    nested = json.dumps(
        {
            "topic": "JSON", "partition": "JSON", "offset": "JSON", "key": "JSON",
            "value": {"schema": "JSON", "payload": env_s, **env_s},
        }
    )  # fmt: skip
    pre_sel = (
        ", ".join(
            [f"{c.pre} as p{i}" for i, c in enumerate(cols) if c.pre]
            + [f"{c.vsd_map} as q{i}" for i, c in enumerate(cols) if c.vsd_map]
        )
        or "null as p_"
    )
    helper_sel = ", ".join(f"{sql} as {name}" for c in cols for name, sql in c.helpers)
    v_sel = ", ".join(f"{c.value} as v{i}" for i, c in enumerate(cols))
    bad = " or ".join(
        f"(x{i} is not null and not coalesce({c.ok}, false))" for i, c in enumerate(cols)
    )
    col_sel = ", ".join(
        (
            "case when tomb or op = 'd' then key_pk when op = 't' then null "
            "else coalesce(v0::bigint, key_pk) end"
            if i == 0
            else f"case when op in ('c', 'u', 'r') then v{i} end"
        )
        + f' as "{n}"'
        for i, n in enumerate(names)
    )
    # the conversion codes of the schemas seen so far (a join would build on the chunk's side)
    codes_expr = (
        "case wrapped_schema "
        + " ".join(
            f"when {_q(text)} then [{', '.join(_q(c) for c in cs)}]" for text, cs in codes.items()
        )
        + " end"
        if codes
        else "null::varchar[]"
    )
    key_re = f'\\{{"{pk}":(-?[0-9]{{1,19}})\\}}'
    key_val = f"try_cast(regexp_extract(kj, '^{key_re}$', 1) as bigint)"
    return f"""
with
__cdc_lines as ({lines_sql}),
a as (
    select lineno, line,
        regexp_matches(line, {_q(_RISKY_COMMA)})
          or (case when regexp_matches(line, {_q(_RISKY_EXP)})
              then regexp_matches(line, {_q(_RISKY_EXP_NUMBER)}) else false end)
          or (case when maybe_nan then regexp_matches(line, {_q(_RISKY_NAN)}) else false end)
          or (case when length(line) >= {_DEEP_LEN} then
              length(line) - length(replace(replace(line, '[', ''), '{{', '')) > {_DEEP}
              else false end)
          as risky,
        try(json_transform(line, {_q(nested)})) as r
    from __cdc_lines
),
b as (
    select lineno, r,
        case when r is not null and not risky then json_keys(line, {_KEY_PATHS}) end as kk
    from a
),
c as (
    select lineno, r, kk,
        coalesce({_unique("kk[1]", known.record)}, false) as line_ok,
        r.topic as tj, r.partition as pj, r.offset as oj, r.key as kj
    from b
),
d as (
    select *,
        case when line_ok and {_is_str("tj")} then {_str("tj")} end as topic,
        case when {_is_int("pj")} then try_cast(pj as hugeint) end as part,
        case when {_is_int("oj")} then try_cast(oj as hugeint) end as offs
    from c
),
f as (
    select *,
        coalesce(line_ok and topic <> '' and part between 0 and {2**31 - 1}
          and offs between 0 and {_I64_MAX}, false) as pos_ok,
        coalesce(line_ok and topic = {_q(table.topic)}, false) as mine,
        -- (CASEs, not ANDs, where a later term costs: an AND evaluates every term on every row)
        case when len(kk[2]) = 2
          then list_has_all(kk[2], ['schema', 'payload']) else false end as wrapped
    from d
),
g as (
    select lineno, topic, part, offs, pos_ok, mine, kj, wrapped,
        mine and (r.value is null or (wrapped and r.value.payload is null)) as tomb,
        not (r.value is null or (wrapped and r.value.payload is null))
          and (len(kk[2]) = 0 or not {_unique("kk[2]", known.envelope)}
          or (wrapped and (len(kk[3]) = 0 or not {_unique("kk[3]", known.envelope)})))
          as value_bad,
        case when wrapped then r.value.payload.op else r.value.op end as e_op,
        case when wrapped then r.value.payload.after else r.value.after end as af,
        case when wrapped then r.value.payload.source else r.value.source end as src,
        case when wrapped then kk[5] else kk[4] end as src_keys,
        case when wrapped then r.value.payload.ts_ms else r.value.ts_ms end as e_ts,
        case when wrapped and starts_with(r.value.schema, '{{') then r.value.schema end
          as wrapped_schema,
        {key_val} as key_pk
    from f
),
h as (
    select *, codes is null and wrapped_schema is not null as new_schema,
        case when e_op in ('"c"', '"u"', '"d"', '"r"', '"t"') then substr(e_op, 2, 1) end as op,
        {code_sel}
    from (select *, {codes_expr} as codes from g)
),
h2 as (
    select *,
        case when op in ('c', 'u', 'r') and starts_with(af, '{{') then json_keys(af) end as ak,
        case when op in ('c', 'u', 'r') and starts_with(af, '{{') then
          json_transform(af, {_q(after_spec)}) end as ax
    from h
),
j as (
    select *,
        src.lsn as src_lsn, src.ts_ms as src_ts, src.txId as src_tx,
        -- the columns the contract does not name, in the image's order: a merge patch with
        -- null for every contract column removes those (no lambda per row)
        case when {has_extra} then json_merge_patch(af, {_q(no_columns)}) end as extra
    from h2
),
k as (
    select *,
        case when {_is_int("src_lsn")} then try_cast(src_lsn as hugeint) end as lsn,
        case when {_is_int("src_ts")} then try_cast(src_ts as hugeint) end as sts,
        case when {_is_int("src_tx")} then try_cast(src_tx as hugeint) end as tx,
        case when {_is_int("e_ts")} then try_cast(e_ts as hugeint) end as ets
    from j
),
l as (
    select *,
        coalesce(src is null or (len(src_keys) > 0 and {_unique("src_keys", known.source)}
            and (src_lsn is null or lsn between {_I64_MIN} and {_I64_MAX})
            and (src_ts is null or sts between {dec._MS_MIN} and {dec._MS_MAX})
            and (src_tx is null or tx between {_I64_MIN} and {_I64_MAX})), false)
          as src_ok,
        case when sts is not null and sts <> 0 then sts else ets end as changed,
        coalesce((sts is not null and sts <> 0) or e_ts is null
          or ets between {dec._MS_MIN} and {dec._MS_MAX}, false) as changed_ok,
        coalesce(op not in ('c', 'u', 'r') or (ak is not null and {_unique("ak", known.after)}
            and (extra is null or regexp_full_match(extra, {_q(_SIMPLE_EXTRA)}))),
          false) as after_ok,
        {x_sel}
    from k
),
m as (select *, {pre_sel} from l),
m2 as (select *{", " + helper_sel if helper_sel else ""} from m),
n as (select *, {v_sel} from m2)
select lineno,
    case when not pos_ok then 1
         when not mine then 2
         when new_schema then 3
         when tomb then (case when key_pk is not null then 0 else 1 end)
         when value_bad or op is null or not src_ok or not changed_ok then 1
         when op = 't' then (case when kj is null or key_pk is not null then 0 else 1 end)
         when key_pk is null then 1
         when op = 'd' then 0
         when not after_ok or {bad} then 1
         else 0 end as st,
    case when pos_ok and not mine then topic end as other_topic,
    wrapped_schema as schema_text,
    topic as _topic, case when pos_ok then part::int end as _partition,
    case when pos_ok then offs::bigint end as _offset,
    case when tomb then 'd' else op end as _op,
    tomb as _is_tombstone,
    case when not tomb then lsn::bigint end as _source_lsn,
    case when not tomb then sts::bigint end as _source_ts_ms,
    case when not tomb then tx::bigint end as _source_tx_id,
    case when not tomb then changed::bigint end as _changed_at,
    case when tomb or op <> 't' then '{{"{pk}":' || key_pk || '}}' end as _key,
    case when op in ('c', 'u', 'r') then extra end as _extra,
    {col_sel}
from n
"""


# -- the driver: chunks of lines -> DecodedBatch ---------------------------------------------------


@dataclass
class Chunk:
    """Whole lines of a file: `data` holds them back to back, `starts`/`ends` delimit each (line
    end kept, as the reference reads them); `first_line` is the number of the first (1-based);
    `end_offset` the file offset after the chunk."""

    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    first_line: int
    end_offset: int

    def __len__(self) -> int:
        return len(self.starts)

    def line(self, i: int) -> bytes:
        return self.data[self.starts[i] : self.ends[i]]


def read_chunks(
    fh: IO[bytes], first_line: int = 1, offset: int = 0, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[Chunk]:
    """Chunks of whole lines from `fh` (positioned at `offset`): each ends at a newline, or at
    the end of the file; a line longer than `chunk_bytes` makes its chunk longer."""
    pending = b""
    line_no = first_line
    while True:
        block = fh.read(chunk_bytes)
        data = pending + block if pending else block
        if not data:
            return
        cut = data.rfind(b"\n") + 1 if block else len(data)
        if cut == 0:  # no newline yet: one long line
            pending = data
            continue
        body, pending = data[:cut], data[cut:]
        arr = np.frombuffer(body, np.uint8)
        nl = np.flatnonzero(arr == 10)
        starts = np.concatenate(([0], nl + 1)).astype(np.int64)
        ends = np.concatenate((nl + 1, [len(body)])).astype(np.int64)
        if starts[-1] == len(body):
            starts, ends = starts[:-1], ends[:-1]
        offset += len(body)
        chunk = Chunk(body, starts, ends, line_no, offset)
        line_no += len(chunk)
        yield chunk
        if not block:
            return


def _lines_with(chunk: Chunk, text: bytes, needles: Sequence[bytes]) -> np.ndarray:
    """Per line of `chunk`: does `text` (the chunk's bytes, or a same-length translation of
    them) contain one of `needles` there? Found with `bytes.find` over the whole chunk (the
    search resumes after the line of each find), so rare needles cost about one scan."""
    found = np.zeros(len(chunk), bool)
    for needle in needles:
        at = text.find(needle)
        while at >= 0:
            i = int(np.searchsorted(chunk.starts, at, side="right")) - 1
            found[i] = True
            at = text.find(needle, int(chunk.ends[i]))
    return found


@dataclass
class ChunkDecoded:
    """One chunk decoded: the batch for `land.land_decoded`, the lines that were no Kafka record
    (dead letters by file position), and the line counts."""

    batch: DecodedBatch
    line_letters: list[DeadLetter]
    lines: int
    blank: int
    columnar_rows: int = 0  # rows decoded in SQL (the rest went through the reference)


@dataclass
class ColumnarDecoder:
    """Decodes chunks of one landing's CDC files on `con` (a DuckDB connection: the warehouse's
    or any other; nothing is written)."""

    con: duckdb.DuckDBPyConnection
    connectors: Mapping[str, dict]
    _codes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    _sql: dict[tuple, duckdb.Statement] = field(default_factory=dict)
    _known: dict[str, KnownKeys] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.con.execute(_MACROS)

    def _query(self, table: CdcTable, retry: bool) -> duckdb.Statement:
        """The decode query of `table`, parsed once (planning it costs 0.03-0.1 CPU-s a chunk)."""
        codes = self._codes.setdefault(table.topic, {})
        known = self._known.get(table.topic, KnownKeys())
        key = (table.topic, retry, len(codes), known)
        if key not in self._sql:
            lines = "select lineno, line, maybe_nan from __cdc_chunk where ok"
            if retry:
                lines += " and lineno in (select lineno from __cdc_retry)"
            mode = dec.decimal_mode_for(table.topic, self.connectors)
            text = table_sql(table, mode, codes, lines, known)
            (self._sql[key],) = self.con.extract_statements(text)
        return self._sql[key]

    def _run(self, table: CdcTable, retry: np.ndarray | None) -> pa.Table:
        if retry is not None:
            self.con.register("__cdc_retry", pa.table({"lineno": pa.array(retry, pa.int64())}))
        try:
            # run once, the parsed statement: `con.sql(...).arrow()` binds the query twice (the
            # relation's bind, then its run), a third of a small chunk's time. The result is one
            # chunk's rows (a few MB), under DuckDB's memory limit like the query.
            self.con.execute(self._query(table, retry is not None))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "an extra copy": a chunk's rows
                return self.con.to_arrow_table()
        finally:
            if retry is not None:
                self.con.unregister("__cdc_retry")

    def decode(self, chunk: Chunk, sha256: str, encoding: str = "UTF-8") -> ChunkDecoded:
        from pipelines.lib.cdc.files import parse_line

        n = len(chunk)
        data = np.frombuffer(chunk.data, np.uint8)
        linenos = np.arange(chunk.first_line, chunk.first_line + n, dtype=np.int64)
        ok = data[chunk.starts] == ord("{") if n else np.zeros(0, bool)
        ok &= (chunk.ends - chunk.starts) <= LONG_LINE
        scanned = chunk.data.translate(_SCAN_TABLE)
        # a number of 25 digits or more may be beyond a double: the reference decides
        ok &= ~_lines_with(chunk, scanned, (_LONG_NUMBER,))
        maybe_nan = _lines_with(chunk, scanned, (b"nan", b"inf"))
        del scanned
        try:
            chunk.data.decode("utf-8")
            good_text = True
        except UnicodeDecodeError:
            good_text = False
        if good_text:
            offsets = np.concatenate((chunk.starts, [len(chunk.data)])).astype(np.int64)
            lines = pa.Array.from_buffers(
                pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chunk.data)]
            )
        else:  # the lines that are not UTF-8 go to the reference (invalid_encoding)
            texts = []
            for i in range(n):
                try:
                    texts.append(chunk.line(i).decode("utf-8"))
                except UnicodeDecodeError:
                    texts.append("")
                    ok[i] = False
            lines = pa.array(texts, pa.large_string())
        # one Arrow batch: DuckDB scans it on one thread (in 2,048-line batches, two threads
        # decoding at once ran out of DECODE_MEMORY_LIMIT on schema-wrapped lines)
        table = pa.table(
            {
                "lineno": pa.array(linenos),
                "line": lines,
                "ok": pa.array(ok),
                "maybe_nan": pa.array(maybe_nan),
            }
        )
        self.con.register("__cdc_chunk", table)
        decoded: dict[str, list[pa.Table]] = {}
        fallback: list[np.ndarray] = [linenos[~ok]]
        try:
            # DuckDB's share while the chunk's queries run (set once per chunk)
            with memory_limit(self.con, DECODE_MEMORY_LIMIT):
                first = self._first_topic(chunk, ok)
                todo: list[tuple[str, np.ndarray | None]] = [(first, None)] if first else []
                if not todo and ok.any():
                    fallback.append(linenos[ok])
                guard = 0
                while todo:
                    topic, retry = todo.pop()
                    guard += 1
                    table = CDC_BY_TOPIC.get(topic)
                    if table is None or not _supported(table) or guard > 50:
                        if retry is None:
                            fallback.append(linenos[ok])
                        else:
                            fallback.append(retry)
                        continue
                    out = self._run(table, retry)
                    st = out["st"].to_numpy()
                    rows = out["lineno"].to_numpy()
                    done = st == 0
                    if done.any():
                        # (filtering copies every column: not when every line decoded)
                        rows_done = out if done.all() else out.filter(pa.array(done))
                        decoded.setdefault(table.raw_table, []).append(
                            rows_done.drop_columns(["st", "other_topic", "schema_text"])
                        )
                    fallback.append(rows[st == 1])
                    new = st == 3
                    if new.any():
                        codes = self._codes.setdefault(table.topic, {})
                        for text in set(out["schema_text"].filter(pa.array(new)).to_pylist()):
                            codes[text] = schema_codes(table, text)
                        todo.append((topic, rows[new]))
                    other = st == 2
                    if other.any():
                        topics = np.array(out["other_topic"].filter(pa.array(other)).to_pylist())
                        for t in set(topics.tolist()):
                            todo.append((t, rows[other][topics == t]))
        finally:
            self.con.unregister("__cdc_chunk")
        return self._merge(chunk, sha256, encoding, decoded, np.concatenate(fallback), parse_line)

    def _first_topic(self, chunk: Chunk, ok: np.ndarray) -> str | None:
        """The topic of the chunk's first record; the first time a topic is seen, the keys of a
        record of it with a row image are kept (`KnownKeys`) for its query."""
        import orjson

        topic = None
        for i in np.flatnonzero(ok)[:5]:
            try:
                obj = orjson.loads(chunk.line(int(i)))
            except orjson.JSONDecodeError:
                continue
            if type(obj) is dict and type(obj.get("topic")) is str:
                topic = topic or obj["topic"]
                if obj["topic"] == topic and topic not in self._known:
                    self._learn(topic, obj)
                if topic in self._known:
                    break
        return topic

    def _learn(self, topic: str, obj: dict) -> None:
        value = obj.get("value")
        if type(value) is dict and len(value) == 2 and "schema" in value and "payload" in value:
            value = value["payload"]
        if type(value) is not dict or type(value.get("after")) is not dict:
            return
        source = value.get("source")
        self._known[topic] = KnownKeys(
            tuple(obj),
            tuple(value),
            tuple(value["after"]),
            tuple(source) if type(source) is dict else (),
        )

    def _merge(
        self,
        chunk: Chunk,
        sha256: str,
        encoding: str,
        decoded: dict[str, list[pa.Table]],
        fallback: np.ndarray,
        parse_line: Any,
    ) -> ChunkDecoded:
        tables = {name: pa.concat_tables(parts) for name, parts in decoded.items()}
        # a position twice in the chunk (or in a line the reference reads): the reference decides
        # for every copy, so the first in reading order wins as it does there
        records: dict[int, ParsedRecord] = {}
        letters: list[DeadLetter] = []
        blank = 0
        for lineno in np.sort(fallback).tolist():
            line = chunk.line(lineno - chunk.first_line)
            if not line.strip():
                blank += 1
                continue
            item = parse_line(line, sha256, lineno, encoding)
            if type(item) is ParsedRecord:
                records[lineno] = item
            else:
                letters.append(item)
        tables, moved = _split_repeats(tables, records)
        for lineno in moved:
            item = parse_line(chunk.line(lineno - chunk.first_line), sha256, lineno, encoding)
            assert type(item) is ParsedRecord
            records[lineno] = item
        ordered = [records[k] for k in sorted(records)]
        reference = decode_batch(ordered, self.connectors) if ordered else None
        out_tables: dict[str, pa.Table] = {}
        chunks: list[tuple[str, int, array]] = []
        columnar = 0
        for name, t in tables.items():
            if not t.num_rows:
                continue
            arrow = _to_reference_types(t, CDC_BY_TOPIC[t["_topic"][0].as_py()])
            columnar += arrow.num_rows
            out_tables[name] = arrow
            chunks.extend(_position_chunks(t))
        if reference is not None:
            chunks.extend(reference.chunks)
            for name, t in reference.tables.items():
                out_tables[name] = (
                    pa.concat_tables([out_tables[name], t]) if name in out_tables else t
                )
        batch = DecodedBatch(
            chunks=chunks,
            tables=out_tables,
            letters=reference.letters if reference is not None else [],
        )
        return ChunkDecoded(batch, letters, len(chunk), blank, columnar)


def decode_chunk_reference(
    chunk: Chunk, sha256: str, connectors: Mapping[str, dict], encoding: str = "UTF-8"
) -> ChunkDecoded:
    """A chunk decoded by the reference code alone (`files.parse_line` per line, then
    `land.decode_batch`): what `land_cdc_files(decoder="parallel")` runs in its worker processes.
    The result is the reference decoder's, line for line; only where it runs differs."""
    from pipelines.lib.cdc.files import parse_line
    from pipelines.lib.cdc.land import gc_paused

    records: list[ParsedRecord] = []
    letters: list[DeadLetter] = []
    blank = 0
    data, first = chunk.data, chunk.first_line
    with gc_paused():
        for i, (a, b) in enumerate(zip(chunk.starts.tolist(), chunk.ends.tolist(), strict=True)):
            line = data[a:b]
            if not line.strip():
                blank += 1
                continue
            item = parse_line(line, sha256, first + i, encoding)
            if type(item) is ParsedRecord:
                records.append(item)
            else:
                letters.append(item)
        batch = (
            decode_batch(records, connectors)
            if records
            else DecodedBatch(chunks=[], tables={}, letters=[])
        )
    return ChunkDecoded(batch, letters, len(chunk), blank, 0)


def _split_repeats(
    tables: dict[str, pa.Table], records: Mapping[int, ParsedRecord]
) -> tuple[dict[str, pa.Table], list[int]]:
    """Rows of SQL-decoded lines whose position occurs more than once in the chunk are taken
    out (their line numbers returned) so that the reference sees every copy in reading order."""
    seen: dict[tuple[str, int, int], int] = {}
    for rec in records.values():
        pos = (rec.topic, rec.partition, rec.offset)
        seen[pos] = seen.get(pos, 0) + 1
    moved: list[int] = []
    out = {}
    for name, t in tables.items():
        topic = t["_topic"].to_numpy(zero_copy_only=False)
        part = t["_partition"].to_numpy()
        offs = t["_offset"].to_numpy()
        order = np.lexsort((offs, part))
        ks, kp = offs[order], part[order]
        same = (ks[1:] == ks[:-1]) & (kp[1:] == kp[:-1])
        repeat = np.zeros(len(order), bool)
        repeat[1:] |= same
        repeat[:-1] |= same
        dup = np.zeros(len(order), bool)
        dup[order] = repeat
        if seen:
            dup |= np.array(
                [(tp, int(p), int(o)) in seen for tp, p, o in zip(topic, part, offs, strict=True)],
                dtype=bool,
            )
        if dup.any():
            moved.extend(t["lineno"].filter(pa.array(dup)).to_pylist())
            t = t.filter(pa.array(~dup))
        out[name] = t
    return out, moved


def _position_chunks(t: pa.Table) -> list[tuple[str, int, array]]:
    topic = t["_topic"][0].as_py()
    part = t["_partition"].to_numpy()
    offs = t["_offset"].to_numpy()
    return [(topic, int(p), array("q", offs[part == p].tolist())) for p in np.unique(part)]


def _decimal(arr: pa.Array, typ: pa.DataType) -> pa.Array:
    """Unscaled int64 -> decimal128 without Python objects (as `land._column_array`)."""
    lo = np.ascontiguousarray(arr.fill_null(0).to_numpy(), dtype=np.int64)
    words = np.empty((len(lo), 2), dtype=np.int64)
    words[:, 0] = lo
    words[:, 1] = lo >> 63
    validity = None if arr.null_count == 0 else pa.array(arr.is_valid()).buffers()[1]
    return pa.Array.from_buffers(
        typ, len(lo), [validity, pa.py_buffer(words)], null_count=arr.null_count
    )


def _to_reference_types(t: pa.Table, table: CdcTable) -> pa.Table:
    """SQL output -> exactly the Arrow schema of `land._TableBuffer.to_arrow`."""
    arrays = []
    for name in _META_ORDER:
        col = t[name].combine_chunks()
        typ = _META_TYPES[name]
        arrays.append(col.cast(pa.int64()).cast(typ) if name == "_changed_at" else col.cast(typ))
    for name, kind in table.columns.items():
        col = t[name].combine_chunks()
        typ = arrow_type(kind)
        if pa.types.is_decimal(typ):
            col = _decimal(col.cast(pa.int64()), typ)
        elif pa.types.is_timestamp(typ):
            col = col.cast(pa.int64()).cast(typ)
        elif pa.types.is_date(typ):
            col = col.cast(pa.int32()).cast(typ)
        else:
            col = col.cast(typ)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, names=[*_META_ORDER, *table.columns])


def decode_lines(
    con: duckdb.DuckDBPyConnection,
    lines: Sequence[bytes],
    connectors: Mapping[str, dict],
    sha256: str = "test",
) -> ChunkDecoded:
    """Decode a list of lines as one chunk (for tests and tools)."""
    import io

    data = b"".join(lines)
    chunk = next(read_chunks(io.BytesIO(data), chunk_bytes=max(len(data), 1)))
    return ColumnarDecoder(con, connectors).decode(chunk, sha256)
