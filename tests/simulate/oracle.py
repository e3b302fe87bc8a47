"""An independent, deliberately naive reading of a simulated landing directory that applies the
rules of DESIGN §5 as written. Tests use it to cross-check the simulator's answer key (the key
itself is computed from what the simulator injected, never from this)."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pipelines.lib.contracts import AMAZON_COLUMNS, CDC_BY_TOPIC

H = timedelta(hours=1)
GRACE = {
    "posting": 24 * H,
    "credit": 48 * H,
    "receipt_after_credit": 336 * H,
    "stale": 720 * H,
    "unmatched": 24 * H,
}
TOL = Decimal("0.01")
OPS = {"c", "u", "d", "r", "t"}
DISP = {"RESTOCK": "STO", "REFURBISH": "RFB", "SCRAP": "SCR", "RETURN_TO_VENDOR": "RTV"}
B2B_HEADER = [
    "request_id",
    "account_number",
    "po_number",
    "erp_order_number",
    "sku",
    "quantity",
    "unit_price",
    "currency",
    "reason_code",
    "requested_at",
    "status",
    "approved_at",
]


class Bad(Exception):
    pass


def num(v) -> Decimal:
    if isinstance(v, Decimal):
        return v
    return Decimal(v) if isinstance(v, str) else Decimal(repr(v))


def norm(rma: str | None) -> str:
    return re.sub(r"[^0-9a-z]", "", (rma or "").lower())


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _unscaled(b64: str, scale: int) -> Decimal:
    try:
        raw = base64.b64decode(b64, validate=True)
    except Exception as exc:
        raise Bad("base64") from exc
    return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale)


def _decode_bare(kind: str, v, mode: str):
    if v is None:
        return None
    if kind == "bigint":
        if not isinstance(v, int) or isinstance(v, bool):
            raise Bad("not an int")
        return v
    if kind.startswith("decimal("):
        scale = int(kind[len("decimal(") : -1].split(",")[1])
        if mode == "precise":
            if not isinstance(v, str):
                raise Bad("precise")
            return _unscaled(v, scale)
        try:
            return Decimal(str(v))
        except InvalidOperation as exc:
            raise Bad("number") from exc
    if kind == "date":
        return date(1970, 1, 1) + timedelta(days=v)
    if kind == "timestamp":
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=v)
    if kind == "timestamptz":
        return ts(v)
    return v


def _decode_schema(field: dict, v):
    if v is None:
        return None
    name = field.get("name", "")
    if name == "org.apache.kafka.connect.data.Decimal":
        return _unscaled(v, int(field["parameters"]["scale"]))
    if name == "io.debezium.data.VariableScaleDecimal":
        return _unscaled(v["value"], int(v["scale"]))
    if name == "io.debezium.time.Date":
        return date(1970, 1, 1) + timedelta(days=v)
    if name == "io.debezium.time.MicroTimestamp":
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=v)
    if name == "io.debezium.time.Timestamp":
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=v)
    if name == "io.debezium.time.ZonedTimestamp":
        return ts(v)
    if field["type"] == "double":
        return Decimal(repr(v))
    if field["type"] == "int64" and (not isinstance(v, int) or isinstance(v, bool)):
        raise Bad("not an int")
    return v


def decode_envelope(topic: str, value: dict, modes: dict) -> tuple[str, dict | None, int, int]:
    tbl = CDC_BY_TOPIC[topic]
    if "payload" in value and "schema" in value:
        env = value["payload"]
        fields = {f["field"]: f for f in value["schema"]["fields"]}
        after_fields = {f["field"]: f for f in fields["after"]["fields"]}

        def dec(row):
            return (
                None
                if row is None
                else {
                    k: _decode_schema(after_fields[k], v) if k in after_fields else v
                    for k, v in row.items()
                }
            )
    else:
        env = value
        mode = modes[tbl.prefix]["decimal.handling.mode"]

        def dec(row):
            return (
                None
                if row is None
                else {
                    k: _decode_bare(tbl.columns[k], v, mode) if k in tbl.columns else v
                    for k, v in row.items()
                }
            )

    op = env.get("op")
    if op not in OPS:
        raise Bad(f"op {op!r}")
    after = dec(env.get("after"))
    dec(env.get("before"))
    src = env["source"]
    if after is not None and not isinstance(after.get(tbl.primary_key), int):
        raise Bad("pk")
    return op, after, src["lsn"], src["ts_ms"]


def read_cdc(landing: Path) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    modes = json.loads((landing / "cdc" / "connectors.json").read_text())
    dead: list[tuple[str, str]] = []
    latest: dict[tuple[str, object], tuple] = {}
    for path in sorted((landing / "cdc").glob("*.ndjson")):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                dead.append(("cdc", f"{sha}:{n}"))
                continue
            topic, pos = rec["topic"], f"{rec['topic']}:{rec['partition']}:{rec['offset']}"
            value = rec["value"]
            if value is None:
                continue  # tombstone: the delete before it already removed the row
            try:
                if isinstance(value, str):
                    raise Bad("not json")
                _op, after, lsn, ts_ms = decode_envelope(topic, value, modes)
            except (Bad, KeyError, TypeError, ValueError):
                dead.append(("cdc", pos))
                continue
            key = (topic, json.dumps(rec["key"], sort_keys=True))
            order = (lsn, ts_ms, rec["partition"], rec["offset"])
            if key not in latest or latest[key][0] < order:
                latest[key] = (order, after)
    tables: dict[str, dict] = defaultdict(dict)
    for (topic, k), (_, after) in latest.items():
        if after is not None:
            tables[CDC_BY_TOPIC[topic].table][k] = after
    return {t: list(rows.values()) for t, rows in tables.items()}, dead


def read_lines(path: Path):
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), data.decode("utf-8").splitlines()


def analyse(landing: Path, as_of: datetime) -> tuple[set, set, list[str]]:
    """(mismatch rows, dead-letter positions, quarantined files) of a landing directory."""
    erp, dead = read_cdc(landing)
    quarantined = []
    xwalk: dict[tuple[str, str], str] = {}
    with open(landing / "reference" / "sku_crosswalk.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            xwalk[(row["channel"], row["channel_sku"])] = row["erp_product_code"]
    with open(landing / "reference" / "warehouse_crosswalk.csv", encoding="utf-8") as f:
        dc_wh = {row["dc_code"]: row["erp_warehouse_code"] for row in csv.DictReader(f)}

    # -- channels --
    returns: dict[str, dict] = {}  # normalized RMA -> return

    def ret(rma: str, channel: str) -> dict:
        return returns.setdefault(
            norm(rma),
            {
                "rma": rma,
                "channel": channel,
                "lines": {},
                "approved": None,
                "excluded": False,
                "keep": False,
                "refund": Decimal(0),
                "refund_at": None,
                "refund_cur": set(),
                "tracking": None,
            },
        )

    saas: dict[int, dict] = {}
    seen_hooks = set()
    for path in sorted((landing / "returns_saas").glob("*.ndjson")):
        sha, lines = read_lines(path)
        for n, line in enumerate(lines, 1):
            try:
                d = json.loads(line)
                p = d["payload"]
                for k in ("webhook_id", "topic", "delivered_at"):
                    d[k]
                for k in ("rma", "state", "updated_at"):
                    p[k]
                if not isinstance(p["id"], int):
                    raise Bad("id")
            except (json.JSONDecodeError, KeyError, Bad):
                dead.append(("returns_saas", f"{sha}:{n}"))
                continue
            if d["webhook_id"] in seen_hooks:
                continue
            seen_hooks.add(d["webhook_id"])
            cur = saas.get(p["id"])
            if cur is None or ts(cur["updated_at"]) < ts(p["updated_at"]):
                saas[p["id"]] = p
    provider_line: dict[int, tuple[str, str]] = {}
    for p in saas.values():
        r = ret(p["rma"], "shopify")
        r["approved"] = ts(p["created_at"])
        r["excluded"] = p["state"] == "cancelled" or p["outcome"] == "keep_item"
        r["keep"] = p["outcome"] == "keep_item"
        r["tracking"] = p["tracking_number"]
        for li in p["line_items"]:
            code = xwalk.get(("shopify", li["sku"]))
            r["lines"][li["sku"]] = code
            provider_line[li["provider_line_item_id"]] = (norm(p["rma"]), code)
    shop_refunds: dict[int, dict] = {}
    for path in sorted((landing / "shopify").glob("*.ndjson")):
        sha, lines = read_lines(path)
        for n, line in enumerate(lines, 1):
            try:
                d = json.loads(line)
                d["order_id"], d["created_at"]
                if not isinstance(d["id"], int):
                    raise Bad("id")
            except (json.JSONDecodeError, KeyError, Bad):
                dead.append(("shopify", f"{sha}:{n}"))
                continue
            shop_refunds[d["id"]] = d
    shop_qty: dict[tuple[str, str], int] = defaultdict(int)
    for d in shop_refunds.values():
        ok = [t for t in d["transactions"] if t["kind"] == "refund" and t["status"] == "success"]
        rmas = {provider_line[li["line_item_id"]][0] for li in d["refund_line_items"]}
        assert len(rmas) == 1
        r = returns[rmas.pop()]
        for li in d["refund_line_items"]:
            if ok:
                shop_qty[(norm(r["rma"]), provider_line[li["line_item_id"]][1])] += li["quantity"]
        for t in ok:
            r["refund"] += Decimal(t["amount"])
            r["refund_cur"].add(t["currency"])
            at = ts(d["processed_at"])
            r["refund_at"] = at if r["refund_at"] is None else min(r["refund_at"], at)
    amazon: dict[tuple[str, str], tuple] = {}
    for path in sorted((landing / "amazon").glob("returns_*.tsv")):
        report = date.fromisoformat(path.stem.split("_")[1])
        sha, lines = read_lines(path)
        reader = csv.reader(lines, delimiter="\t")
        header = next(reader)
        if header != list(AMAZON_COLUMNS):
            quarantined.append(str(path.relative_to(landing)))
            continue
        for n, row in enumerate(reader, 1):
            d = dict(zip(header, row, strict=True))
            try:
                int(d["Return quantity"])
            except ValueError:
                dead.append(("amazon", f"{sha}:{n}"))
                continue
            k = (d["Amazon RMA ID"], d["Merchant SKU"])
            if k not in amazon or amazon[k][0] <= report:
                amazon[k] = (report, d)
    for (rma, sku), (report, d) in sorted(amazon.items()):
        r = ret(rma, "amazon")
        r["approved"] = ts(d["Return request date"])
        r["tracking"] = d["Tracking ID"]
        r["lines"][sku] = xwalk.get(("amazon", sku))
        if d["Refunded Amount"]:
            amount = Decimal(d["Refunded Amount"])
            r["refund"] += amount
            if amount > 0:
                r["refund_cur"].add(d["Currency code"])
                at = (
                    ts(d["Return delivery date"])
                    if d["Return delivery date"]
                    else datetime(report.year, report.month, report.day, tzinfo=UTC)
                )
                r["refund_at"] = at if r["refund_at"] is None else min(r["refund_at"], at)
    for path in sorted((landing / "b2b").glob("*.csv")):
        sha, lines = read_lines(path)
        reader = csv.reader(lines)
        header = next(reader)
        if header != B2B_HEADER:
            quarantined.append(str(path.relative_to(landing)))
            continue
        for n, row in enumerate(reader, 1):
            d = dict(zip(header, row, strict=True))
            try:
                Decimal(d["quantity"])
            except InvalidOperation:
                dead.append(("b2b", f"{sha}:{n}"))
                continue
            r = ret(d["request_id"], "b2b")
            r["lines"][d["sku"]] = xwalk.get(("b2b", d["sku"]))
            r["excluded"] = d["status"] == "rejected"
            r["approved"] = ts(d["approved_at"]) if d["approved_at"] else None

    # -- ERP --
    products = {p["id"]: p["code"] for p in erp["product_product"]}
    currencies = {c["id"]: c["code"] for c in erp["currency_currency"]}
    locations = {loc["id"]: loc for loc in erp["stock_location"]}
    loc_by_code = {loc["code"]: i for i, loc in locations.items()}
    sales = {s["id"]: s for s in erp["sale_sale"]}
    ret_line: dict[int, tuple[str, str, Decimal]] = {}  # line id -> (nrma, product, authorized)
    for ln in erp["sale_line"]:
        s = sales[ln["sale"]]
        if s["origin"] and s["origin"].startswith("sale.sale,") and ln["quantity"] < 0:
            nr = norm(s["reference"])
            assert nr in returns, s["reference"]
            ret_line[ln["id"]] = (nr, products[ln["product"]], abs(num(ln["quantity"])))
    invoices = {i["id"]: i for i in erp["account_invoice"]}
    credit = defaultdict(lambda: {"amount": Decimal(0), "at": None, "cur": set(), "ids": set()})
    credited_qty: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for il in erp["account_invoice_line"]:
        inv = invoices[il["invoice"]]
        if inv["type"] != "out" or inv["state"] not in ("posted", "paid"):
            continue
        line = ret_line.get(int(il["origin"].split(",")[1]))
        if line is None:
            continue
        c = credit[line[0]]
        credited_qty[line[:2]] += abs(num(il["quantity"]))
        if inv["id"] not in c["ids"]:
            c["ids"].add(inv["id"])
            c["amount"] += abs(num(inv["total_amount_cache"]))
            c["cur"].add(currencies[inv["currency"]])
            at = datetime(
                inv["invoice_date"].year,
                inv["invoice_date"].month,
                inv["invoice_date"].day,
                tzinfo=UTC,
            )
            c["at"] = at if c["at"] is None else min(c["at"], at)
    posted: dict[tuple[str, str, int], Decimal] = defaultdict(Decimal)
    for m in erp["stock_move"]:
        if m["state"] != "done" or not (m["origin"] or "").startswith("sale.line,"):
            continue
        line = ret_line.get(int(m["origin"].split(",")[1]))
        if line is not None:
            posted[(line[0], line[1], m["to_location"])] += num(m["quantity"])

    # -- WMS --
    by_tracking = {r["tracking"]: k for k, r in returns.items() if r["tracking"]}
    received: set[str] = set()
    receipt_line: dict[int, tuple[str, str, str]] = {}
    out: set[tuple[str, str, str]] = set()
    for rc in erp["receipts"]:
        nr = norm(rc["rma_number"])
        if not (nr and nr in returns):
            nr = by_tracking.get(rc["tracking_number"]) if rc["tracking_number"] else None
        if nr is None:
            if rc["received_at"] + GRACE["unmatched"] <= as_of:
                out.add(("unmatched_receipt", (rc["rma_number"] or "").strip().upper(), rc["sku"]))
            continue
        received.add(nr)
        receipt_line[rc["receipt_id"]] = (nr, rc["sku"], dc_wh[rc["dc_code"]])
    inspected: dict[tuple[str, str, int], Decimal] = defaultdict(Decimal)
    last_insp: dict[tuple[str, str, int], datetime] = {}
    for ins in erp["inspections"]:
        link = receipt_line.get(ins["receipt_id"])
        if link is None:
            continue
        k = (link[0], link[1], loc_by_code[f"{link[2]}-{DISP[ins['disposition']]}"])
        inspected[k] += num(ins["quantity"])
        last_insp[k] = max(last_insp.get(k, ins["inspected_at"]), ins["inspected_at"])

    rma = {k: r["rma"] for k, r in returns.items()}
    for k in set(inspected) | set(posted):
        i, p = inspected.get(k, Decimal(0)), posted.get(k, Decimal(0))
        passed = k in last_insp and last_insp[k] + GRACE["posting"] <= as_of
        if i > 0 and p == 0 and passed:
            out.add(("receipt_not_posted", rma[k[0]], k[1]))
        if i > 0 and p > 0 and passed and i != p:
            out.add(("posted_qty_mismatch", rma[k[0]], k[1]))
        if p > 0 and i == 0:
            out.add(("disposition_mismatch", rma[k[0]], k[1]))
    for k, r in returns.items():
        c = credit.get(k)
        if r["refund"] > 0 and r["refund_at"] + GRACE["credit"] <= as_of and not c:
            out.add(("refund_without_credit", r["rma"], ""))
        if r["refund"] > 0 and c:
            if r["refund_cur"] != c["cur"]:
                out.add(("currency_mismatch", r["rma"], ""))
            elif abs(r["refund"] - c["amount"]) > TOL:
                out.add(("credit_amount_mismatch", r["rma"], ""))
        if (
            c
            and c["at"] + GRACE["receipt_after_credit"] <= as_of
            and k not in received
            and (not r["keep"])
        ):
            out.add(("credit_without_receipt", r["rma"], ""))
        if (
            r["approved"]
            and r["approved"] + GRACE["stale"] <= as_of
            and k not in received
            and (not r["excluded"])
        ):
            out.add(("stale_return", r["rma"], ""))
        for sku, code in r["lines"].items():
            if code is None:
                out.add(("unmapped_sku", r["rma"], sku))
    authorized = {(nr, code): q for nr, code, q in ret_line.values()}
    for k, q in list(credited_qty.items()) + list(shop_qty.items()):
        if k[1] is not None and q > authorized[k]:
            out.add(("duplicate_credit", rma[k[0]], k[1]))
    return out, set(dead), quarantined
