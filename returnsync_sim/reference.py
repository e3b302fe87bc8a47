"""Fixed reference data of the simulated landscape: warehouses, locations, currencies, products,
customers and the per-source reason vocabularies (documented in docs/simulator.md)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

CHANNELS = ("shopify", "amazon", "b2b")

# WMS dc_code -> (ERP warehouse code, ERP warehouse location id, display name)
WAREHOUSES: tuple[tuple[str, str, int, str], ...] = (
    ("DC-EAST", "WH-E", 10, "East Warehouse"),
    ("DC-WEST", "WH-W", 20, "West Warehouse"),
    ("DC-CENTRAL", "WH-C", 30, "Central Warehouse"),
)
# WMS disposition -> (ERP location suffix, offset of the child location id under its warehouse)
DISPOSITIONS: dict[str, tuple[str, int]] = {
    "RESTOCK": ("STO", 1),
    "REFURBISH": ("RFB", 2),
    "SCRAP": ("SCR", 3),
    "RETURN_TO_VENDOR": ("RTV", 4),
}
DISPOSITION_NAMES = {
    "STO": "Restock",
    "RFB": "Refurbish",
    "SCR": "Scrap",
    "RTV": "Return to vendor",
}
CUSTOMER_LOCATION_ID = 1


def location_id(warehouse_index: int, disposition: str) -> int:
    """ERP stock_location id of a disposition location of a warehouse."""
    return WAREHOUSES[warehouse_index][2] + DISPOSITIONS[disposition][1]


def location_code(warehouse_index: int, disposition: str) -> str:
    return f"{WAREHOUSES[warehouse_index][1]}-{DISPOSITIONS[disposition][0]}"


CURRENCIES: dict[str, int] = {"EUR": 1, "USD": 2, "GBP": 3, "CHF": 4}
CHANNEL_CURRENCIES = {
    "shopify": ("EUR", "USD", "GBP"),
    "amazon": ("USD", "EUR", "GBP"),
    "b2b": ("EUR", "USD", "GBP", "CHF"),
}
TAX_RATES = {
    "EUR": Decimal("0.19"),
    "USD": Decimal("0.0725"),
    "GBP": Decimal("0.20"),
    "CHF": Decimal("0.081"),
}
# UTC offsets (minutes) the channel systems print their local times in, per currency
LOCAL_OFFSETS = {"EUR": 60, "USD": -300, "GBP": 0, "CHF": 60}

# Reason vocabularies of each source (DESIGN §2.8: the dbt seed maps them to canonical reasons)
SAAS_REASONS: tuple[tuple[str, str, str], ...] = (
    # (return_reason, parent_return_reason, canonical)
    ("Defective", "Quality", "defective"),
    ("Stopped working", "Quality", "defective"),
    ("Damaged in shipping", "Shipping", "damaged_in_transit"),
    ("Wrong item sent", "Shipping", "wrong_item"),
    ("Not as described", "Product", "not_as_described"),
    ("Changed my mind", "Preference", "no_longer_needed"),
    ("Too small", "Size", "size_fit"),
    ("Too large", "Size", "size_fit"),
    ("Arrived too late", "Shipping", "arrived_late"),
    ("Other", "Other", "other"),
)
AMAZON_REASONS: tuple[tuple[str, str], ...] = (
    ("CR-DEFECTIVE", "defective"),
    ("CR-DAMAGED_BY_CARRIER", "damaged_in_transit"),
    ("CR-DAMAGED_BY_FC", "damaged_in_transit"),
    ("CR-SWITCHEROO", "wrong_item"),
    ("CR-NOT_AS_DESCRIBED", "not_as_described"),
    ("CR-UNWANTED_ITEM", "no_longer_needed"),
    ("CR-ORDERED_WRONG_ITEM", "no_longer_needed"),
    ("AMZ-PG-APP-TOO-SMALL", "size_fit"),
    ("AMZ-PG-APP-TOO-LARGE", "size_fit"),
    ("CR-MISSED_ESTIMATED_DELIVERY", "arrived_late"),
    ("CR-OTHER", "other"),
)
B2B_REASONS: tuple[tuple[str, str], ...] = (
    ("DEF", "defective"),
    ("DMG", "damaged_in_transit"),
    ("WRG", "wrong_item"),
    ("NAD", "not_as_described"),
    ("OVS", "no_longer_needed"),
    ("FIT", "size_fit"),
    ("LATE", "arrived_late"),
    ("OTH", "other"),
)

_ADJ = (
    "Trail",
    "Urban",
    "Classic",
    "Alpine",
    "Coastal",
    "Nordic",
    "Studio",
    "Summit",
    "Harbor",
    "Metro",
    "Canyon",
    "Arctic",
)
_NOUN = (
    "Runner Shoe",
    "Rain Jacket",
    "Backpack 30L",
    "Wool Sweater",
    "Headlamp",
    "Water Bottle",
    "Cycling Gloves",
    "Tent 2P",
    "Sleeping Bag",
    "Desk Lamp",
    "Espresso Grinder",
    "Bluetooth Speaker",
)
N_PRODUCTS = 144


@dataclass(frozen=True)
class Product:
    index: int
    id: int  # ERP product_product id
    code: str  # ERP product code (WMS sku)
    name: str
    price: Decimal
    asin: str

    def channel_sku(self, channel: str) -> str:
        suffix = self.code[1:]
        return {"shopify": f"SH-{suffix}", "amazon": f"AMZ-{suffix}-FBM", "b2b": f"B2B{suffix}"}[
            channel
        ]


def products() -> tuple[Product, ...]:
    """The catalogue; identical for every seed so crosswalks and seeds stay stable."""
    out = []
    for j in range(N_PRODUCTS):
        cents = 999 + (j * 7919) % 49000  # 9.99 .. 499.98
        out.append(
            Product(
                index=j,
                id=1000 + j,
                code=f"P{10001 + j}",
                name=f"{_ADJ[j % len(_ADJ)]} {_NOUN[(j // len(_ADJ)) % len(_NOUN)]}",
                price=Decimal(cents) / 100,
                asin=f"B0{(j * 104729) % 10**8:08d}",
            )
        )
    return tuple(out)


_FIRST = (
    "Anna",
    "Ben",
    "Chloé",
    "David",
    "Elif",
    "Farid",
    "Greta",
    "Hiroshi",
    "Ines",
    "Jonas",
    "Kerstin",
    "Luca",
    "Maya",
    "Nils",
    "Olga",
    "Pedro",
    "Quentin",
    "Rosa",
    "Sven",
    "Tamara",
    "Umar",
    "Vera",
    "William",
    "Xenia",
    "Yusuf",
    "Zoë",
    "Aoife",
    "Bjørn",
    "Camille",
    "Dmitri",
)
_LAST = (
    "Müller",
    "Schmidt",
    "García",
    "Rossi",
    "Dubois",
    "Novak",
    "Kowalski",
    "O'Brien",
    "Jensen",
    "Yamamoto",
    "Okafor",
    "Larsen",
    "Fischer",
    "Silva",
    "Weber",
    "Nguyen",
    "Haddad",
    "Svensson",
    "Moreau",
    "Costa",
    "Becker",
    "Ivanova",
    "Kaya",
    "Murphy",
    "Lindqvist",
    "Andersen",
    "Ferreira",
    "Horvat",
    "Petrov",
    "Walsh",
    "Meyer",
)


def party_name(party_id: int) -> tuple[str, str]:
    """Deterministic (first, last) name of a customer: personal data reports must never show."""
    return (
        _FIRST[(party_id * 7919) % len(_FIRST)],
        _LAST[(party_id * 104729 + party_id // len(_FIRST)) % len(_LAST)],
    )


def party_email(party_id: int) -> str:
    first, last = party_name(party_id)
    ascii_last = last.encode("ascii", "ignore").decode().replace("'", "").lower()
    ascii_first = first.encode("ascii", "ignore").decode().lower()
    return f"{ascii_first}.{ascii_last}{party_id}@example.com"
