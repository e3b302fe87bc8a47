"""Reference files versioned by arrival (DESIGN §12).

A reference file (`reference/*.csv`: the crosswalks) is a full snapshot that the business edits
and uploads again. Unlike every other file drop, its identity is not its content alone: a file
whose content differs from the *current* version's becomes the new current version, even when
that content landed before (putting back the earlier crosswalk after a truncated upload must
restore it). Each arrival is a row of `meta.reference_versions` `(raw_table, version, sha256,
arrived_at, ...)`; the highest version is current and the staging models select its rows from
raw (`_file_sha256`). The rows of a content already landed are not landed again.

A new version that drops more than `DROP_THRESHOLD` of the current version's keys (the
FileSource's `key` columns, compared trimmed and case-insensitively) is still applied, and is
flagged: the landing asset's check `reference_mapping_drop` fails (severity ERROR) and the run
summary prints a warning, for as long as that version is current.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from pipelines.lib.contracts import FileSource

REFERENCE_SOURCE = "reference"  # the ledger source of the versioned files
DROP_THRESHOLD = 0.10  # a new version dropping more than this share of the keys is flagged


def is_versioned(fs: FileSource) -> bool:
    return fs.source == REFERENCE_SOURCE


@dataclass(frozen=True)
class ReferenceVersion:
    raw_table: str
    version: int
    sha256: str
    arrived_at: datetime
    path: str
    keys: int | None  # distinct keys in this version (None: recorded before keys were counted)
    keys_before: int | None  # distinct keys of the version it replaced (None: the first)
    keys_dropped: int | None  # keys of the replaced version that this one does not have

    @property
    def mapping_drop(self) -> bool:
        """True when this version dropped more than DROP_THRESHOLD of the previous keys."""
        if not self.keys_before or self.keys_dropped is None:
            return False
        return self.keys_dropped / self.keys_before > DROP_THRESHOLD

    def describe(self) -> str:
        share = f" ({self.keys_dropped / self.keys_before:.0%})" if self.keys_before else ""
        return (
            f"reference {self.raw_table}: version {self.version} ({self.path}, arrived "
            f"{self.arrived_at:%Y-%m-%d %H:%M:%S} UTC) dropped {self.keys_dropped} of the "
            f"{self.keys_before} keys of the previous version{share}"
        )


_COLUMNS = "raw_table, version, sha256, arrived_at, path, keys, keys_before, keys_dropped"


def current_versions(con: duckdb.DuckDBPyConnection) -> dict[str, ReferenceVersion]:
    """The current version of each reference table that has one."""
    rows = con.execute(
        f"select {_COLUMNS} from meta.reference_versions "
        "qualify row_number() over (partition by raw_table order by version desc) = 1"
    ).fetchall()
    return {row[0]: ReferenceVersion(*row) for row in rows}


def _key_select(fs: FileSource, placeholder: str = "?") -> str:
    columns = fs.key or fs.required
    keys = ", ".join(f'lower(trim(cast("{c}" as varchar)))' for c in columns)  # a date key too
    return f"select distinct {keys} from raw.{fs.raw_table} where _file_sha256 = {placeholder}"


def record_version(
    con: duckdb.DuckDBPyConnection,
    fs: FileSource,
    sha256: str,
    path: str,
    arrived_at: datetime,
) -> ReferenceVersion:
    """Make `sha256` (its rows already in raw) the current version of `fs`; counts the keys it
    keeps of the version it replaces. Call inside the transaction that landed its rows."""
    current = current_versions(con).get(fs.raw_table)
    keys = con.execute(f"select count(*) from ({_key_select(fs)})", [sha256]).fetchall()[0][0]
    keys_before = keys_dropped = None
    if current is not None:
        keys_before, keys_dropped = con.execute(
            f"select (select count(*) from ({_key_select(fs)})), "
            f"(select count(*) from ({_key_select(fs)} except {_key_select(fs)}))",
            [current.sha256, current.sha256, sha256],
        ).fetchall()[0]
    version = ReferenceVersion(
        fs.raw_table,
        (current.version if current else 0) + 1,
        sha256,
        arrived_at,
        path,
        keys,
        keys_before,
        keys_dropped,
    )
    con.execute(
        f"insert into meta.reference_versions ({_COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            version.raw_table,
            version.version,
            version.sha256,
            version.arrived_at,
            version.path,
            version.keys,
            version.keys_before,
            version.keys_dropped,
        ],
    )
    return version


def reference_warnings(con: duckdb.DuckDBPyConnection) -> list[str]:
    """One line per reference table whose current version dropped too many keys."""
    return [v.describe() for _, v in sorted(current_versions(con).items()) if v.mapping_drop]
