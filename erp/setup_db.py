"""Prepare the reference Tryton database once (DESIGN §8), cached under `.cache/tryton/`.

Run with the ERP venv's Python (it imports trytond and proteus):

    .venv-erp/bin/python erp/setup_db.py            # prints the path of the prepared database

The database is a SQLite file with `sale`, `stock` and `account_invoice` activated and the
reference setup: a company (EUR), a chart of accounts, fiscal years 2025-2027 with invoice
sequences, a direct payment term, the currencies EUR/USD/GBP with rates, goods products `P-1001`...,
three warehouses `WH-E`, `WH-W`, `WH-C`, each with the disposition locations `<wh>-STO`, `-RFB`,
`-SCR`, `-RTV`, and a customer. It is built in a temporary directory and moved into
`.cache/tryton/<hash>/` only when complete; the hash covers this script and `requirements.lock`, so
a change to either builds a new one. Creating it takes ~30 s; users copy the file (never open the
cached one directly) and delete any `-wal`/`-shm` files next to the copy.

The admin login is a local development credential of this throw-away database (`admin`, password
`returnsync-dev` unless `--password`/TRYTON_ADMIN_PASSWORD says otherwise; the hash then differs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent
DATABASE_NAME = "returnsync"
ADMIN_LOGIN = "admin"
DEFAULT_PASSWORD = "returnsync-dev"
MODULES = ("sale", "stock", "account_invoice")
FISCAL_YEARS = (2025, 2026, 2027)
CURRENCIES = {  # code -> (name, symbol, rate against the company currency EUR)
    "EUR": ("Euro", "€", Decimal("1.0")),
    "USD": ("U.S. Dollar", "$", Decimal("1.08")),
    "GBP": ("Pound Sterling", "£", Decimal("0.86")),
}
PRODUCTS = {  # code -> (name, list price in EUR)
    "P-1001": ("Trail running shoe", Decimal("89.00")),
    "P-1002": ("Rain jacket", Decimal("129.00")),
    "P-1003": ("Merino base layer", Decimal("59.50")),
    "P-1004": ("Headlamp", Decimal("34.99")),
    "P-1005": ("Water filter", Decimal("44.00")),
    "P-1006": ("Trekking poles", Decimal("74.25")),
}
WAREHOUSES = {"WH-E": "Warehouse East", "WH-W": "Warehouse West", "WH-C": "Warehouse Central"}
DISPOSITIONS = {"STO": "Restock", "RFB": "Refurbish", "SCR": "Scrap", "RTV": "Return to vendor"}
CUSTOMER = ("C-0001", "Reference Customer")


def cache_key(password: str) -> str:
    """Hash of what determines the database: this script, the lock, the admin password."""
    digest = hashlib.sha256()
    digest.update(Path(__file__).read_bytes())
    digest.update((HERE / "requirements.lock").read_bytes())
    digest.update(password.encode())
    return digest.hexdigest()[:16]


def cache_dir(password: str = DEFAULT_PASSWORD) -> Path:
    return PROJECT_ROOT / ".cache" / "tryton" / cache_key(password)


def database_file(directory: Path) -> Path:
    """Where trytond's SQLite backend keeps database `returnsync` under `directory`."""
    return directory / f"{DATABASE_NAME}.sqlite"


def prepare(password: str = DEFAULT_PASSWORD, force: bool = False) -> Path:
    """Return the cached prepared database file, building it first if it is missing."""
    target = cache_dir(password)
    if database_file(target).exists() and not force:
        return database_file(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    try:
        _build(work, password)
        if force and target.exists():
            shutil.rmtree(target)
        try:
            work.rename(target)  # atomic; fails if a concurrent build got there first
        except OSError:
            # or if the folder holds the PostgreSQL dump (built first by `make stack-up`): move
            # the database in beside it (os.replace is atomic within the folder's file system)
            if not database_file(target).exists():
                os.replace(database_file(work), database_file(target))
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return database_file(target)


def dump_file(password: str = DEFAULT_PASSWORD) -> Path:
    """Where the PostgreSQL build of the reference database is cached (`pg_dump -Fc`)."""
    return cache_dir(password) / f"{DATABASE_NAME}.pgdump"


def prepare_postgresql(
    server_uri: str, pg_bin: Path, password: str = DEFAULT_PASSWORD, force: bool = False
) -> Path:
    """The reference database built on PostgreSQL (the live stack, DESIGN §13), as a cached dump.

    `server_uri` is a running server (`postgresql://user@127.0.0.1:PORT/`) where a scratch
    database is built, dumped with `pg_dump -Fc` and dropped. Users restore the dump
    (`pg_restore`) into a database of their own: a restore takes ~2 s, a build ~30 s.
    """
    target = dump_file(password)
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = f"returnsync_build_{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="build-pg-", dir=target.parent))
    base = server_uri.rstrip("/") + "/"
    try:
        _psql(pg_bin, base, f"create database \"{scratch}\" encoding 'UTF8' template template0")
        _build(work, password, database=scratch, uri=base)
        partial = work / target.name
        subprocess.run(
            [str(pg_bin / "pg_dump"), "-Fc", "--no-owner", "-f", str(partial), base + scratch],
            check=True,
        )  # fmt: skip
        partial.rename(target)  # atomic within .cache/tryton/<hash>
    finally:
        _psql(pg_bin, base, f'drop database if exists "{scratch}"', check=False)
        shutil.rmtree(work, ignore_errors=True)
    return target


def _psql(pg_bin: Path, uri: str, sql: str, check: bool = True) -> None:
    subprocess.run(
        [str(pg_bin / "psql"), uri + "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        check=check, capture_output=not check,
    )  # fmt: skip


def _build(work: Path, password: str, database: str = DATABASE_NAME, uri: str = "") -> None:
    passfile = work / ".passfile"
    passfile.write_text(password + "\n")
    if uri:
        env = {**os.environ, "TRYTOND_DATABASE__URI": uri, "TRYTONPASSFILE": str(passfile)}
    else:
        database_file(work).touch()
        env = {
            **os.environ,
            "TRYTOND_DATABASE__URI": "sqlite://",
            "TRYTOND_DATABASE__PATH": str(work),
            "TRYTONPASSFILE": str(passfile),
        }
    env["RETURNSYNC_SETUP_DATABASE"] = database
    print("activating modules (trytond-admin, ~25 s)...", file=sys.stderr, flush=True)
    subprocess.run(
        [
            str(Path(sys.executable).parent / "trytond-admin"),
            "-d", database, "--email", "admin@returnsync.invalid",
            "--activate-dependencies", "-u", *MODULES,
        ],
        env=env, check=True,
    )  # fmt: skip
    passfile.unlink()
    # the reference data goes in through proteus in a child process, so trytond reads the
    # configuration from the environment before it is imported
    print("creating the reference setup (proteus)...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, __file__, "--_populate"], env=env, check=True)
    for suffix in ("-wal", "-shm", "-journal"):
        Path(str(database_file(work)) + suffix).unlink(missing_ok=True)


def _populate() -> None:
    from proteus import Model, config
    from trytond.modules.account.tests.tools import create_chart, create_fiscalyear, get_accounts
    from trytond.modules.account_invoice.tests.tools import (
        create_payment_term,
        set_fiscalyear_invoice_sequences,
    )
    from trytond.modules.company.tests.tools import create_company, get_company

    config.set_trytond(os.environ.get("RETURNSYNC_SETUP_DATABASE", DATABASE_NAME))

    Currency = Model.get("currency.currency")
    Rate = Model.get("currency.currency.rate")
    currencies = {}
    for code, (name, symbol, rate) in CURRENCIES.items():
        found = Currency.find([("code", "=", code)])
        currency = found[0] if found else Currency(name=name, symbol=symbol, code=code)
        currency.rounding = Decimal("0.01")
        currency.save()
        Rate(date=dt.date(2000, 1, 1), rate=rate, currency=currency).save()
        currencies[code] = currency

    Party = Model.get("party.party")
    company_party = Party(name="Returnsync Distribution")
    company_party.save()
    create_company(party=company_party, currency=currencies["EUR"])
    company = get_company()

    create_chart(company)
    for year in FISCAL_YEARS:
        fiscalyear = set_fiscalyear_invoice_sequences(
            create_fiscalyear(company, (dt.date(year, 1, 1), dt.date(year, 12, 31)))
        )
        fiscalyear.click("create_period")
    accounts = get_accounts(company)

    term = create_payment_term()
    term.save()

    Category = Model.get("product.category")
    account_category = Category(name="Goods (accounting)", accounting=True)
    account_category.account_revenue = accounts["revenue"]
    account_category.account_expense = accounts["expense"]
    account_category.save()
    sale_category = Category(name="Returnable goods")
    sale_category.save()

    Uom = Model.get("product.uom")
    unit, = Uom.find([("name", "=", "Unit")])  # fmt: skip
    Template = Model.get("product.template")
    for code, (name, price) in PRODUCTS.items():
        template = Template(name=name, code=code, type="goods", default_uom=unit)
        template.salable = True
        template.list_price = price
        template.account_category = account_category
        template.categories.append(Category(sale_category.id))
        template.save()

    Location = Model.get("stock.location")
    for wh_code, wh_name in WAREHOUSES.items():
        locations = {}
        for suffix, label in {"IN": "Input", "OUT": "Output", **DISPOSITIONS}.items():
            loc = Location(name=f"{wh_name} {label}", code=f"{wh_code}-{suffix}", type="storage")
            loc.save()
            locations[suffix] = loc
        warehouse = Location(name=wh_name, code=wh_code, type="warehouse")
        warehouse.input_location = locations["IN"]
        warehouse.output_location = locations["OUT"]
        warehouse.storage_location = locations["STO"]
        warehouse.save()
        for suffix in ("RFB", "SCR", "RTV"):
            locations[suffix].parent = warehouse
            locations[suffix].save()

    # returnsync's stock postings force-assign their internal shipments (the returned goods are
    # not always on the books of the input location yet): the integration user needs this group
    User = Model.get("res.user")
    Group = Model.get("res.group")
    ModelData = Model.get("ir.model.data")
    admin, = User.find([("login", "=", ADMIN_LOGIN)])  # fmt: skip
    admin.groups.append(
        Group(ModelData.get_id("stock.group_stock_force_assignment", config.get_config().context))
    )
    admin.save()

    code, name = CUSTOMER
    customer = Party(name=name, code=code)
    customer.customer_payment_term = term
    customer.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument(
        "--password", default=None,
        help="admin password of the new database (default: $TRYTON_ADMIN_PASSWORD or "
        "returnsync-dev)",
    )  # fmt: skip
    parser.add_argument(
        "--postgresql", metavar="URI", default=None,
        help="build on this running PostgreSQL server (postgresql://user@127.0.0.1:PORT/) and "
        "print the path of the cached dump instead of a SQLite file",
    )  # fmt: skip
    parser.add_argument(
        "--pg-bin", type=Path, default=None, help="directory of psql/pg_dump (with --postgresql)"
    )
    parser.add_argument("--_populate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._populate:
        _populate()
        return
    password = args.password or os.environ.get("TRYTON_ADMIN_PASSWORD") or DEFAULT_PASSWORD
    if args.postgresql:
        pg_bin = args.pg_bin or Path(shutil.which("pg_dump") or "/usr/bin/pg_dump").parent
        print(prepare_postgresql(args.postgresql, pg_bin, password, force=args.force))
        return
    print(prepare(password, force=args.force))


if __name__ == "__main__":
    main()
