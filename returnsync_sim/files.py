"""Output files that know their sha256 and line count as they are written (dead-letter
positions are `<sha256 of the file>:<row>`)."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path


class HashedWriter:
    """Appends lines (UTF-8, `\\n`) to a file, hashing them on the way."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed by close()
        self._h = hashlib.sha256()
        self.lines = 0
        self.sha256: str | None = None

    def write_line(self, text: str) -> int:
        data = (text + "\n").encode("utf-8")
        self._f.write(data)
        self._h.update(data)
        self.lines += 1
        return self.lines

    def close(self) -> None:
        if self.sha256 is None:
            self._f.close()
            self.sha256 = self._h.hexdigest()


class CsvWriter(HashedWriter):
    """CSV/TSV with a header row; `write_row` returns the 1-based data-row number."""

    def __init__(self, path: Path, header: list[str], delimiter: str = ",") -> None:
        super().__init__(path)
        self._delimiter = delimiter
        self.write_line(self._format(header))

    def _format(self, row: list[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, delimiter=self._delimiter, lineterminator="\n").writerow(row)
        return buf.getvalue()[:-1]

    def write_row(self, row: list[str]) -> int:
        return self.write_line(self._format(row)) - 1
