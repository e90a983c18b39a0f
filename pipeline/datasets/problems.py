"""Problems found in metadata files, collected and reported together, each naming the file and the place in it.

Data-set metadata comes in many hands-edited layouts; listing every problem at once (as ``pipeline.labels`` does
for label CSVs) lets a user fix a table in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import UsageError

_LISTED = 20  # problems printed; the rest are counted


@dataclass(frozen=True)
class Place:
    """Where a row came from: the file and a human-readable position (``line 12``, ``row 5 of sheet MOS``)."""

    path: str
    at: str

    def __str__(self) -> str:
        return f"{self.path}, {self.at}"


class MetadataError(UsageError):
    """A metadata file cannot be imported; the message lists the problems, each with its file and place."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems[:_LISTED])
        more = f"\n  ... and {len(self.problems) - _LISTED} more" if len(self.problems) > _LISTED else ""
        super().__init__(f"{len(self.problems)} problem(s) in the metadata:\n{listed}{more}")


def fail(path: str, problem: str) -> MetadataError:
    """A MetadataError about a whole file (no particular line)."""
    return MetadataError([f"{path}: {problem}"])
