"""Decode Debezium change events (DESIGN §2.1-2.3) into typed values.

Two paths share one set of value decoders:

- `decode_envelope(value)`: generic, for any table. A schema-wrapped envelope
  (`{"schema", "payload"}`, Kafka Connect JsonConverter) is decoded by its schema (Connect and
  Debezium logical types: decimals, times, dates); a bare envelope keeps its raw JSON values.
- `TableDecoder(table, decimal_mode)` / `decode_row(...)`: contract-driven, for the tables of
  `contracts.CDC_TABLES`. Every contract column is read as its contract type; the bare envelope's
  decimal encoding comes from the connector's `decimal.handling.mode`.

Anything that cannot be decoded raises `DecodeError`, whose message names the field; the landing
code turns it into a dead letter. Money is `Decimal`, never float; times are UTC.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any

import orjson

from pipelines.lib.coltypes import decimal_type
from pipelines.lib.contracts import CdcTable

ROW_OPS = frozenset({"c", "u", "d", "r", "t"})  # operations that change a table
ENVELOPE_OPS = ROW_OPS | {"m"}  # plus logical decoding messages (their own topic, never a table's)
DECIMAL_MODES = ("precise", "string", "double")
DEFAULT_DECIMAL_MODE = "precise"

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_NAIVE = datetime(1970, 1, 1)
EPOCH_DATE = date(1970, 1, 1)
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_EXACT = Context(prec=200)  # wide enough that scaling and rounding never lose a digit
# Times are kept within years 1-9999 (what Python and DuckDB both represent).
_US_MIN, _US_MAX = -62_135_596_800_000_000, 253_402_300_799_999_999
_MS_MIN, _MS_MAX = _US_MIN // 1000, _US_MAX // 1000
_DAYS_MIN, _DAYS_MAX = -719_162, 2_932_896


class DecodeError(ValueError):
    """A record that cannot be decoded. `field` names where (e.g. `after.unit_price`)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def _describe(value: Any) -> str:
    text = _big(value) if type(value) is int else repr(value)
    kind = type(value).__name__
    if kind == "dict":
        kind = "object"
    elif kind == "list":
        kind = "array"
    elif kind == "NoneType":
        kind = "null"
    return f"{kind} {text[:60] + '...' if len(text) > 60 else text}"


# -- JSON ---------------------------------------------------------------------------------------


def loads(data: bytes | str, field: str) -> Any:
    """Parse JSON (orjson), raising `DecodeError` naming `field` on bad input."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(field, f"bad JSON ({exc})") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, time):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> str:
    """JSON text for the `json` columns (`_key`, `_extra`); decimals as exact strings."""
    try:
        return orjson.dumps(value, default=_json_default).decode()
    except TypeError:  # nested deeper than orjson writes (255): the standard library, slower
        try:
            return json.dumps(
                value, default=_json_default_slow, ensure_ascii=False, separators=(",", ":")
            )
        except RecursionError:
            raise DecodeError("value", "nested too deep to be stored as JSON") from None


def _json_default_slow(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return _json_default(value)


# -- value decoders shared by both paths ---------------------------------------------------------


# The widest unscaled integer decoded exactly: 80 bytes hold 192 digits, within `_EXACT`'s 200
# (DuckDB's widest DECIMAL has 38). Wider ones are refused before any conversion: Decimal() of a
# 1 MB integer takes minutes.
_MAX_DECIMAL_BYTES = 80


def _big(n: int) -> str:
    """An integer for a message: in full if short (str() refuses over 4300 digits)."""
    return str(n) if n.bit_length() <= 256 else f"a {n.bit_length()}-bit number"


def decimal_from_base64(value: str, scale: int, field: str) -> Decimal:
    """Kafka Connect `Decimal`: base64 of the big-endian two's-complement unscaled integer."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise DecodeError(field, f"bad number: not base64 {_describe(value)}") from None
    if len(raw) > _MAX_DECIMAL_BYTES:
        raise DecodeError(field, f"number out of range: {len(raw)} bytes (more than 192 digits)")
    unscaled = int.from_bytes(raw, "big", signed=True)
    try:
        return Decimal(unscaled).scaleb(-scale, _EXACT)
    except (ArithmeticError, ValueError):  # a scale beyond what a Decimal can hold
        raise DecodeError(field, f"number out of range: scale {_big(scale)}") from None


def decimal_from_variable_scale(value: Any, field: str) -> Decimal:
    """`io.debezium.data.VariableScaleDecimal`: `{"scale": s, "value": base64}`."""
    if not isinstance(value, Mapping) or "value" not in value:
        raise DecodeError(field, f"bad VariableScaleDecimal {_describe(value)}")
    scale = value.get("scale")
    if type(scale) is not int:
        raise DecodeError(f"{field}.scale", f"expected an integer, got {_describe(scale)}")
    return decimal_from_base64(value["value"], scale, f"{field}.value")


def parse_timestamp(value: str, field: str) -> datetime:
    """ISO-8601 (`ZonedTimestamp`) -> aware UTC datetime; a time without offset is UTC."""
    if type(value) is not str:
        raise DecodeError(field, f"expected an ISO-8601 timestamp string, got {_describe(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise DecodeError(field, f"bad timestamp {value[:60]!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is in year 0 in UTC
        raise DecodeError(
            field, f"timestamp out of range {value[:60]!r} (not in years 1-9999 in UTC)"
        ) from None


def _from_epoch(value: Any, field: str, unit_us: int, kind: str) -> datetime:
    if type(value) is not int:
        raise DecodeError(field, f"expected an integer ({kind}), got {_describe(value)}")
    try:
        if unit_us == 0:  # nanoseconds
            return EPOCH + timedelta(microseconds=value // 1000)
        return EPOCH + timedelta(microseconds=value * unit_us)
    except OverflowError:
        raise DecodeError(field, f"timestamp out of range: {_big(value)}") from None


def _days(value: Any, field: str) -> date:
    if type(value) is not int:
        raise DecodeError(
            field, f"expected an integer (Date, days since epoch), got {_describe(value)}"
        )
    try:
        return EPOCH_DATE + timedelta(days=value)
    except OverflowError:
        raise DecodeError(field, f"date out of range: {_big(value)}") from None


def _time_of_day(value: Any, field: str, divisor: int) -> time:
    if type(value) is not int:
        raise DecodeError(field, f"expected an integer (time of day), got {_describe(value)}")
    micros = value // divisor
    try:
        return (datetime.min + timedelta(microseconds=micros)).time()
    except OverflowError:
        raise DecodeError(field, f"time out of range: {_big(value)}") from None


# -- generic, schema-driven decoding ------------------------------------------------------------


def _logical_decimal(value: Any, schema: Mapping, field: str) -> Decimal:
    params = schema.get("parameters") or {}
    try:
        scale = int(params.get("scale", 0))
    except (TypeError, ValueError):
        raise DecodeError(field, f"bad Decimal scale in schema {params.get('scale')!r}") from None
    if type(value) is str:
        return decimal_from_base64(value, scale, field)
    if type(value) is int:  # tolerate a converter that wrote a number
        return Decimal(value)
    if type(value) is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise DecodeError(field, f"bad number {_describe(value)}")
        return Decimal(repr(value))
    raise DecodeError(field, f"bad number {_describe(value)}")


_LOGICAL: dict[str, Callable[[Any, Mapping, str], Any]] = {
    "org.apache.kafka.connect.data.Decimal": _logical_decimal,
    "io.debezium.data.VariableScaleDecimal": lambda v, s, f: decimal_from_variable_scale(v, f),
    "io.debezium.time.ZonedTimestamp": lambda v, s, f: parse_timestamp(v, f),
    "io.debezium.time.MicroTimestamp": lambda v, s, f: _from_epoch(v, f, 1, "MicroTimestamp"),
    "io.debezium.time.Timestamp": lambda v, s, f: _from_epoch(v, f, 1000, "Timestamp"),
    "io.debezium.time.NanoTimestamp": lambda v, s, f: _from_epoch(v, f, 0, "NanoTimestamp"),
    "org.apache.kafka.connect.data.Timestamp": lambda v, s, f: _from_epoch(v, f, 1000, "Timestamp"),
    "io.debezium.time.Date": lambda v, s, f: _days(v, f),
    "org.apache.kafka.connect.data.Date": lambda v, s, f: _days(v, f),
    "io.debezium.time.MicroTime": lambda v, s, f: _time_of_day(v, f, 1),
    "io.debezium.time.Time": lambda v, s, f: _time_of_day(v * 1000 if type(v) is int else v, f, 1),
    "io.debezium.time.NanoTime": lambda v, s, f: _time_of_day(v, f, 1000),
    "org.apache.kafka.connect.data.Time": lambda v, s, f: _time_of_day(
        v * 1000 if type(v) is int else v, f, 1
    ),
}


def decode_with_schema(value: Any, schema: Mapping | None, field: str) -> Any:
    """Decode one value by its Kafka Connect schema (JsonConverter `schemas.enable=true`)."""
    if value is None or not isinstance(schema, Mapping):
        return value
    logical = _LOGICAL.get(schema.get("name") or "")
    if logical is not None:
        return logical(value, schema, field)
    kind = schema.get("type")
    if kind == "struct":
        if not isinstance(value, dict):
            raise DecodeError(field, f"expected an object, got {_describe(value)}")
        fields = {f.get("field"): f for f in schema.get("fields") or () if isinstance(f, Mapping)}
        return {k: decode_with_schema(v, fields.get(k), f"{field}.{k}") for k, v in value.items()}
    if kind == "array":
        if not isinstance(value, list):
            raise DecodeError(field, f"expected an array, got {_describe(value)}")
        items = schema.get("items")
        return [decode_with_schema(v, items, f"{field}[{i}]") for i, v in enumerate(value)]
    if kind == "bytes" and type(value) is str:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise DecodeError(field, f"bad bytes: not base64 {_describe(value)}") from None
    return value


def _decode_payload(payload: dict, schema: Mapping) -> dict:
    fields = {f.get("field"): f for f in schema.get("fields") or () if isinstance(f, Mapping)}
    return {k: decode_with_schema(v, fields.get(k), k) for k, v in payload.items()}


def unwrap(obj: Any) -> tuple[Any, bool]:
    """`{"schema", "payload"}` -> (payload decoded by its schema, True); anything else as is.

    A wrapper whose `schema` is null (the Debezium documentation samples) keeps raw values.
    """
    if isinstance(obj, dict) and "payload" in obj and "schema" in obj and len(obj) == 2:
        payload, schema = obj["payload"], obj["schema"]
        if isinstance(payload, dict) and isinstance(schema, Mapping):
            return _decode_payload(payload, schema), True
        return payload, False
    return obj, False


def _opt_int(value: Any, field: str, lo: int = _I64_MIN, hi: int = _I64_MAX) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise DecodeError(field, f"expected an integer, got {_describe(value)}")
    if not lo <= value <= hi:
        raise DecodeError(field, f"out of range: {_big(value)}")
    return value


@dataclass(frozen=True)
class Envelope:
    """One decoded Debezium change event. A tombstone has `op` None."""

    op: str | None
    before: dict | None
    after: dict | None
    source: dict
    ts_ms: int | None
    transaction: dict | None = None
    message: dict | None = None
    has_schema: bool = False

    @property
    def is_tombstone(self) -> bool:
        return self.op is None

    @property
    def source_lsn(self) -> int | None:
        return self.source.get("lsn")

    @property
    def source_ts_ms(self) -> int | None:
        return self.source.get("ts_ms")

    @property
    def source_tx_id(self) -> int | None:
        return self.source.get("txId")

    @property
    def changed_at(self) -> datetime | None:
        """The source change time (`source.ts_ms`, else the envelope's `ts_ms`) in UTC."""
        ms = self.source_ts_ms or self.ts_ms
        return None if ms is None else EPOCH + timedelta(milliseconds=ms)


def decode_envelope(value: bytes | str | Mapping | None) -> Envelope:
    """Decode any Debezium envelope without a contract (bytes, JSON text or parsed JSON).

    Schema-wrapped envelopes are decoded by their schema; bare ones keep raw JSON values.
    `None` (a Kafka tombstone) gives an `Envelope` with `op` None.
    """
    if value is None:
        return Envelope(op=None, before=None, after=None, source={}, ts_ms=None)
    obj = loads(value, "value") if isinstance(value, bytes | bytearray | str) else value
    env, has_schema = unwrap(obj)
    if env is None:  # JsonConverter's tombstone: {"schema": null, "payload": null}
        return Envelope(op=None, before=None, after=None, source={}, ts_ms=None)
    if not isinstance(env, dict):
        raise DecodeError(
            "value", f"expected a JSON object (Debezium envelope), got {_describe(env)}"
        )
    op = env.get("op")
    if op is None:
        raise DecodeError("op", "missing")
    if op not in ENVELOPE_OPS:
        raise DecodeError("op", f"unknown operation {op!r}")
    source = env.get("source") or {}
    if not isinstance(source, dict):
        raise DecodeError("source", f"expected an object, got {_describe(source)}")
    _opt_int(source.get("lsn"), "source.lsn")
    _opt_int(source.get("ts_ms"), "source.ts_ms", _MS_MIN, _MS_MAX)  # `changed_at` is a time
    _opt_int(source.get("txId"), "source.txId")
    before, after = env.get("before"), env.get("after")
    for name, image in (("before", before), ("after", after)):
        if image is not None and not isinstance(image, dict):
            raise DecodeError(name, f"expected an object, got {_describe(image)}")
    if op in ("c", "u", "r") and after is None:
        raise DecodeError("after", f"missing row image for op {op!r}")
    message = env.get("message")
    if op == "m" and not isinstance(message, dict):
        raise DecodeError("message", "missing for op 'm'")
    return Envelope(
        op=op,
        before=before,
        after=after,
        source=source,
        ts_ms=_opt_int(env.get("ts_ms"), "ts_ms", _MS_MIN, _MS_MAX),
        transaction=env.get("transaction"),
        message=message,
        has_schema=has_schema,
    )


# -- contract-driven decoding --------------------------------------------------------------------
#
# Converters return Arrow-native values so a batch becomes Arrow arrays without Python objects
# per cell: decimals of precision <= 18 as their unscaled integer, `timestamp`/`timestamptz` as µs
# since the epoch (UTC), `date` as days since the epoch. `decode_row` turns them back into
# `Decimal`/`datetime`/`date` for people and tests.

Converter = Callable[[Any], Any]
_US = timedelta(microseconds=1)
_EPOCH_ORDINAL = EPOCH_DATE.toordinal()
_a2b = binascii.a2b_base64


def _int_converter(field: str, lo: int, hi: int, kind: str) -> Converter:
    def conv(v: Any) -> Any:
        if type(v) is int:
            if lo <= v <= hi:
                return v
            raise DecodeError(field, f"out of range for {kind}: {_big(v)}")
        if v is None:
            return None
        raise DecodeError(field, f"expected an integer, got {_describe(v)}")

    return conv


def _str_converter(field: str) -> Converter:
    def conv(v: Any) -> Any:
        if v is None or type(v) is str:
            return v
        raise DecodeError(field, f"expected a string, got {_describe(v)}")

    return conv


def _double_converter(field: str) -> Converter:
    def conv(v: Any) -> Any:
        t = type(v)
        if t is float or v is None:
            return v
        if t is int or t is Decimal:
            try:
                return float(v)
            except OverflowError:  # an int beyond a double (a Decimal gives inf)
                raise DecodeError(field, f"out of range for double: {_big(v)}") from None
        raise DecodeError(field, f"expected a number, got {_describe(v)}")

    return conv


def _bool_converter(field: str) -> Converter:
    def conv(v: Any) -> Any:
        if v is None or type(v) is bool:
            return v
        raise DecodeError(field, f"expected a boolean, got {_describe(v)}")

    return conv


_DECIMAL_CACHE = 4096


def _decimal_converter(field: str, precision: int, scale: int, mode: str) -> Converter:
    """-> the unscaled integer at the column's scale (rounded half-even); a `Decimal` if p > 18."""
    quantum = Decimal(1).scaleb(-scale)
    limit = 10**precision  # on the unscaled integer
    kind = f"decimal({precision},{scale})"
    as_int = precision <= 18
    factor = 10**scale

    def from_decimal(d: Decimal, v: Any) -> Any:
        if not d.is_finite():
            raise DecodeError(field, f"bad number {_short(v)} ({kind})")
        try:
            d = d.quantize(quantum, ROUND_HALF_EVEN, _EXACT)
        except InvalidOperation:
            raise DecodeError(field, f"out of range for {kind}: {_short(v)}") from None
        unscaled = int(d.scaleb(scale, _EXACT))
        if not -limit < unscaled < limit:
            raise DecodeError(field, f"out of range for {kind}: {d}")
        return unscaled if as_int else d

    def from_string(v: str) -> Any:
        try:
            d = Decimal(v)
        except InvalidOperation:
            raise DecodeError(field, f"bad number {v[:60]!r} ({kind})") from None
        return from_decimal(d, v)

    def convert(v: Any) -> Any:
        t = type(v)
        if t is str:
            if mode != "precise":
                return from_string(v)
            if not v:
                raise DecodeError(field, f"bad number: empty string ({kind})")
            try:
                unscaled = int.from_bytes(_a2b(v, strict_mode=True), "big", signed=True)
            except (binascii.Error, ValueError):
                # Not base64: a plain decimal string ("12.50", "-3") is unambiguous.
                try:
                    return from_string(v)
                except DecodeError:
                    raise DecodeError(
                        field, f"bad number: neither base64 (precise) nor decimal {v[:60]!r}"
                    ) from None
            if not -limit < unscaled < limit:
                shown = f"{unscaled}e-{scale}" if unscaled.bit_length() <= 256 else _big(unscaled)
                raise DecodeError(field, f"out of range for {kind}: {shown}")
            return unscaled if as_int else Decimal(unscaled).scaleb(-scale, _EXACT)
        if v is None:
            return None
        if t is float:
            # shortest repr: 1234.56 stays 1234.56, then rounded half-even to the column's scale
            return from_decimal(Decimal(repr(v)), v)
        if t is int:
            if as_int and -limit < v * factor < limit:
                return v * factor
            return from_decimal(Decimal(v), v)
        if t is Decimal:
            return from_decimal(v, v)
        if t is dict:
            return from_decimal(decimal_from_variable_scale(v, field), v)
        raise DecodeError(field, f"expected a number, got {_describe(v)}")

    # A column's decimal strings repeat (a product's price, a quantity of "1.000"): a string's
    # result (an int, or an immutable Decimal) is kept, up to _DECIMAL_CACHE strings a column.
    cache: dict[str, Any] = {}
    cache_get = cache.get

    def conv(v: Any) -> Any:
        if type(v) is str:
            out = cache_get(v)
            if out is None:
                out = convert(v)  # a bad string raises here, every time
                if len(cache) < _DECIMAL_CACHE and len(v) <= 64:
                    cache[v] = out
            return out
        return convert(v)

    return conv


def _short(v: Any) -> str:
    """A value for a message, at most ~60 characters (a value can be megabytes long)."""
    if type(v) is int:
        return _big(v)
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _date_converter(field: str) -> Converter:
    """-> days since the epoch (bare `Date` ints pass through)."""

    def conv(v: Any) -> Any:
        t = type(v)
        if t is int:
            if _DAYS_MIN <= v <= _DAYS_MAX:
                return v
            raise DecodeError(field, f"date out of range: {_big(v)}")
        if v is None:
            return None
        if t is date:
            return v.toordinal() - _EPOCH_ORDINAL
        if t is str:
            try:
                return date.fromisoformat(v).toordinal() - _EPOCH_ORDINAL
            except ValueError:
                raise DecodeError(field, f"bad date {v[:60]!r}") from None
        raise DecodeError(field, f"expected a date (days since epoch), got {_describe(v)}")

    return conv


def _timestamp_converter(field: str, aware: bool) -> Converter:
    """-> µs since the epoch, UTC. `timestamp` (bare: MicroTimestamp ints) or `timestamptz`
    (bare: ZonedTimestamp ISO strings); schema-decoded datetimes of either are accepted."""

    def conv(v: Any) -> Any:
        t = type(v)
        if t is int and not aware:
            if _US_MIN <= v <= _US_MAX:
                return v
            raise DecodeError(field, f"timestamp out of range: {_big(v)}")
        if v is None:
            return None
        if t is str:
            v = parse_timestamp(v, field)
        elif t is not datetime:
            want = "an ISO-8601 timestamp string" if aware else "an integer (MicroTimestamp µs)"
            raise DecodeError(field, f"expected {want}, got {_describe(v)}")
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        return (v - EPOCH) // _US

    return conv


def _json_converter(field: str) -> Converter:
    return lambda v: None if v is None else dumps(v)


def column_converter(kind: str, decimal_mode: str, field: str) -> Converter:
    """The converter that reads one contract column (DuckDB type `kind`), Arrow-native output."""
    dec = decimal_type(kind)
    if dec:
        return _decimal_converter(field, dec[0], dec[1], decimal_mode)
    simple: dict[str, Callable[[], Converter]] = {
        "bigint": lambda: _int_converter(field, _I64_MIN, _I64_MAX, "bigint"),
        "integer": lambda: _int_converter(field, _I32_MIN, _I32_MAX, "integer"),
        "varchar": lambda: _str_converter(field),
        "double": lambda: _double_converter(field),
        "boolean": lambda: _bool_converter(field),
        "date": lambda: _date_converter(field),
        "timestamp": lambda: _timestamp_converter(field, aware=False),
        "timestamptz": lambda: _timestamp_converter(field, aware=True),
        "json": lambda: _json_converter(field),
    }
    if kind not in simple:
        raise ValueError(f"no CDC decoder for column type {kind!r} ({field})")
    return simple[kind]()


def to_python(kind: str, value: Any) -> Any:
    """An Arrow-native converter output back to `Decimal` / `datetime` (UTC) / `date`."""
    if value is None:
        return None
    dec = decimal_type(kind)
    if dec:
        return value if isinstance(value, Decimal) else Decimal(value).scaleb(-dec[1], _EXACT)
    if kind == "timestamptz":
        return EPOCH + timedelta(microseconds=value)
    if kind == "timestamp":
        return EPOCH_NAIVE + timedelta(microseconds=value)
    if kind == "date":
        return EPOCH_DATE + timedelta(days=value)
    return value


# A decoded row is a flat tuple: these metadata fields, then the contract columns in order.
ROW_META = (
    "_op",
    "_is_tombstone",
    "_source_lsn",
    "_source_ts_ms",
    "_source_tx_id",
    "_changed_at",  # ms since the epoch
    "_key",  # JSON text
    "_extra",  # JSON text of the `after` columns the contract does not name
)
N_ROW_META = len(ROW_META)


def parse_key(key: bytes | str | None) -> dict | None:
    """The record key as a JSON object (schema-wrapped keys unwrapped), or None if absent."""
    if key is None:
        return None
    return key_object(loads(key, "key"))


def key_object(obj: Any) -> dict | None:
    """A parsed record key -> its JSON object (schema-wrapped keys unwrapped), or None."""
    if type(obj) is dict and len(obj) == 2 and "payload" in obj:
        obj, _ = unwrap(obj)
    if obj is None:
        return None
    if type(obj) is not dict:
        raise DecodeError("key", f"expected a JSON object, got {_describe(obj)}")
    return obj


# Inline fast-path checks of the generated row builders: a value passing its check is already
# the Arrow-native result; anything else (None, other types, out of range) goes through the
# column's converter, which converts it or raises the `DecodeError`.
_FAST_CHECK = {
    "bigint": f"type(v) is int and {_I64_MIN} <= v <= {_I64_MAX}",
    "integer": f"type(v) is int and {_I32_MIN} <= v <= {_I32_MAX}",
    "varchar": "type(v) is str",
    "double": "type(v) is float",
    "boolean": "type(v) is bool",
    "date": f"type(v) is int and {_DAYS_MIN} <= v <= {_DAYS_MAX}",
    "timestamp": f"type(v) is int and {_US_MIN} <= v <= {_US_MAX}",
}


def _row_builder(names: list[str], kinds: list[str], convs: list[Converter]) -> Callable:
    """`build(after) -> tuple` of Arrow-native column values, one generated function per table
    and encoding: the hot path of landing, without a Python call per ordinary value."""
    lines = ["def build(after):", "    get = after.get"]
    for i, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        lines.append(f"    v = get({name!r})")
        check = _FAST_CHECK.get(kind)
        if check is None:
            lines.append(f"    v{i} = c{i}(v)")
        else:
            lines.append(f"    v{i} = v if {check} else c{i}(v)")
    lines.append(f"    return ({', '.join(f'v{i}' for i in range(len(names)))},)")
    namespace: dict[str, Any] = {f"c{i}": c for i, c in enumerate(convs)}
    exec(compile("\n".join(lines), f"<row builder {names[0]}..>", "exec"), namespace)
    return namespace["build"]


def _extra_json(after: dict, columns: frozenset) -> str | None:
    """JSON text of the `after` columns the contract does not name (None if there are none), in
    the source's column order, so the text is deterministic."""
    unknown = after.keys() - columns
    if not unknown:
        return None
    if len(unknown) == 1:
        (name,) = unknown
        return dumps({name: after[name]})
    return dumps({k: v for k, v in after.items() if k in unknown})


def _fast_decoder(
    names: list[str], kinds: list[str], convs: list[Converter], columns: frozenset, slow: Callable
) -> Callable:
    """`decode(key, value) -> row`, generated per table: the common record (a bare envelope,
    op c/u/r, a `source` with integer `lsn`/`ts_ms`/`txId`, a key object, a row image with its
    primary key) decoded in one function, with the row builder's checks inline; anything else
    goes to `slow` (`TableDecoder.decode`), which therefore decides every error and rare case.
    The result is `slow`'s for the same record: the checks here are those `slow` makes before
    it builds the row, so a converter's `DecodeError` is the one `slow` would raise."""
    i64 = f"{_I64_MIN} <= {{0}} <= {_I64_MAX}"
    lines = [
        "def decode(key, value):",
        "    if type(value) is dict and type(key) is dict and 'payload' not in value:",
        "        op = value.get('op')",
        "        if op == 'c' or op == 'u' or op == 'r':",
        "            source = value.get('source')",
        "            after = value.get('after')",
        "            if type(source) is dict and type(after) is dict:",
        "                lsn = source.get('lsn')",
        "                ts = source.get('ts_ms')",
        "                tx = source.get('txId')",
        f"                if (type(ts) is int and ts and {_MS_MIN} <= ts <= {_MS_MAX}"
        f" and (lsn is None or (type(lsn) is int and {i64.format('lsn')}))"
        f" and (tx is None or (type(tx) is int and {i64.format('tx')}))):",
        "                    get = after.get",
    ]
    pad = " " * 20
    for i, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        lines.append(f"{pad}v = get({name!r})")
        check = _FAST_CHECK.get(kind)
        convert = f"c{i}(v)" if check is None else f"v if {check} else c{i}(v)"
        lines.append(f"{pad}v{i} = {convert}")
    values = ", ".join(f"v{i}" for i in range(len(names)))
    lines += [
        f"{pad}if v0 is not None:",
        f"{pad}    try:",
        f"{pad}        kt = odumps(key).decode()",
        f"{pad}    except TypeError:",
        f"{pad}        kt = dumps(key)",
        f"{pad}    return (op, False, lsn, ts, tx, ts, kt,"
        f" None if issuperset(after) else extra(after, columns), {values},)",
        "    return slow(key, value)",
    ]
    namespace: dict[str, Any] = {f"c{i}": c for i, c in enumerate(convs)}
    namespace.update(
        odumps=orjson.dumps,
        dumps=dumps,
        issuperset=columns.issuperset,
        extra=_extra_json,
        columns=columns,
        slow=slow,
    )
    exec(compile("\n".join(lines), f"<fast decoder {names[0]}..>", "exec"), namespace)
    return namespace["decode"]


class TableDecoder:
    """Decodes envelopes of one contract table, with the connector's decimal mode.

    `decode` handles every record; `fast` (generated) gives the same rows and errors, quicker on
    the common record, and is what the landing code calls."""

    def __init__(self, table: CdcTable, decimal_mode: str = DEFAULT_DECIMAL_MODE) -> None:
        if decimal_mode not in DECIMAL_MODES:
            raise ValueError(f"decimal.handling.mode must be one of {DECIMAL_MODES}")
        self.table = table
        self.names = list(table.columns)
        self.columns = frozenset(self.names)
        self.pk = table.primary_key
        self._nulls = (None,) * len(self.names)
        cols = table.columns.items()
        # Bare envelopes: strings of decimal columns follow the connector's mode. Schema-wrapped
        # ones are decoded by their schema first, so a string left over is a plain decimal string.
        self._bare = [(n, column_converter(k, decimal_mode, f"after.{n}")) for n, k in cols]
        self._wrapped = [(n, column_converter(k, "string", f"after.{n}")) for n, k in cols]
        self._key = {
            n: (i, column_converter(k, decimal_mode, f"key.{n}")) for i, (n, k) in enumerate(cols)
        }
        kinds = list(table.columns.values())
        self._build_bare = _row_builder(self.names, kinds, [c for _, c in self._bare])
        self._build_wrapped = _row_builder(self.names, kinds, [c for _, c in self._wrapped])
        self.fast = _fast_decoder(
            self.names, kinds, [c for _, c in self._bare], self.columns, self.decode
        )

    def _key_values(self, key: dict) -> tuple:
        if self.pk not in key:
            raise DecodeError(f"key.{self.pk}", "missing from the record key")
        values: list[Any] = [None] * len(self.names)
        for name, v in key.items():
            slot = self._key.get(name)
            if slot is not None:
                values[slot[0]] = slot[1](v)
        if values[0] is None:
            raise DecodeError(f"key.{self.pk}", "is null")
        return tuple(values)

    def decode(self, key: dict | None, value: Any, key_text: str | None = None) -> tuple:
        """Decode one record -> flat row tuple (`ROW_META` fields, then the contract columns).

        `key` comes from `parse_key`; `value` is the parsed envelope, or None for a tombstone.
        `key_text` is the key's JSON text if the caller has it (else it is serialised).
        """
        schema = None
        if type(value) is dict and "payload" in value and len(value) == 2 and "schema" in value:
            env, schema = value["payload"], value["schema"]
            if not isinstance(schema, Mapping):
                schema = None
        else:
            env = value
        if env is None:  # tombstone: the key is all there is
            if key is None:
                raise DecodeError("key", "missing record key (tombstone)")
            kt = key_text or dumps(key)
            return ("d", True, None, None, None, None, kt, None, *self._key_values(key))
        if type(env) is not dict:
            raise DecodeError(
                "value", f"expected a JSON object (Debezium envelope), got {_describe(env)}"
            )
        op = env.get("op")
        if op not in ROW_OPS:
            if op is None:
                raise DecodeError("op", "missing")
            if op == "m":
                raise DecodeError("op", "'m' is a logical decoding message, not a table change")
            raise DecodeError("op", f"unknown operation {op!r}")
        source = env.get("source")
        if source is None:
            lsn = ts = tx = None
        elif type(source) is dict:
            lsn, ts, tx = source.get("lsn"), source.get("ts_ms"), source.get("txId")
            if not (
                (lsn is None or (type(lsn) is int and _I64_MIN <= lsn <= _I64_MAX))
                and (ts is None or (type(ts) is int and _MS_MIN <= ts <= _MS_MAX))
                and (tx is None or (type(tx) is int and _I64_MIN <= tx <= _I64_MAX))
            ):
                lsn = _opt_int(lsn, "source.lsn")
                ts = _opt_int(ts, "source.ts_ms", _MS_MIN, _MS_MAX)
                tx = _opt_int(tx, "source.txId")
        else:
            raise DecodeError("source", f"expected an object, got {_describe(source)}")
        changed = ts or _opt_int(env.get("ts_ms"), "ts_ms", _MS_MIN, _MS_MAX)
        if op == "t":  # truncate: no key, no row image
            return ("t", False, lsn, ts, tx, changed, None, None, *self._nulls)
        if key is None:
            raise DecodeError("key", "missing record key")
        if op == "d":
            # The before image is never data: NOT NULL columns carry type defaults there.
            kt = key_text or dumps(key)
            return ("d", False, lsn, ts, tx, changed, kt, None, *self._key_values(key))
        after = env.get("after")
        if type(after) is not dict:
            if after is None:
                raise DecodeError("after", f"missing row image for op {op!r}")
            raise DecodeError("after", f"expected an object, got {_describe(after)}")
        if schema is None:
            values = self._build_bare(after)
        else:
            after_schema = _field_schemas(schema, "after")
            after = {
                k: v
                if v is None or k not in after_schema
                else decode_with_schema(v, after_schema[k], f"after.{k}")
                for k, v in after.items()
            }
            values = self._build_wrapped(after)
        if values[0] is None:
            values = (self._key_values(key)[0], *values[1:])
        extra = _extra_json(after, self.columns)
        if key_text is None:
            key_text = dumps(key)
        return (op, False, lsn, ts, tx, changed, key_text, extra, *values)


def _field_schemas(schema: Mapping, name: str) -> dict[str, Mapping]:
    """The fields of the envelope schema's `name` struct that need decoding (logical types,
    bytes, nested structs), by field name."""
    for top in schema.get("fields") or ():
        if isinstance(top, Mapping) and top.get("field") == name:
            return {
                f["field"]: f
                for f in top.get("fields") or ()
                if isinstance(f, Mapping)
                and (f.get("name") or f.get("type") in ("bytes", "struct", "array", "map"))
            }
    return {}


def decode_row(
    table: CdcTable,
    key: bytes | str | None,
    value: bytes | str | None,
    *,
    decimal_mode: str = DEFAULT_DECIMAL_MODE,
) -> dict[str, Any]:
    """Decode one Kafka record of a contract table into a dict: metadata + contract columns,
    as Python values (`Decimal`, UTC `datetime`, `date`).

    For tests and tools; landing uses `TableDecoder` directly, per batch.
    """
    parsed = None if value is None else loads(value, "value")
    row = TableDecoder(table, decimal_mode).decode(parse_key(key), parsed)
    out = dict(zip(ROW_META, row[:N_ROW_META], strict=True))
    ms = out["_changed_at"]
    out["_changed_at"] = None if ms is None else EPOCH + timedelta(milliseconds=ms)
    for (name, kind), v in zip(table.columns.items(), row[N_ROW_META:], strict=True):
        out[name] = to_python(kind, v)
    return out


def decimal_mode_for(topic: str, connectors: Mapping[str, Mapping]) -> str:
    """The connector's `decimal.handling.mode` for a topic (by its prefix), default precise."""
    prefix = topic.split(".", 1)[0]
    return (connectors.get(prefix) or {}).get("decimal.handling.mode") or DEFAULT_DECIMAL_MODE
