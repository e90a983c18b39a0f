"""Standard VQA data sets: their official metadata, read into the project's label CSV (``vqa-data``).

Readers (``text``, ``sheets``, ``matfiles``) give every format one ``Table`` shape; ``catalog`` knows each
data set's layout and quirks, ``generic`` reads any other table by named columns; ``resolve`` finds the videos;
``importer`` runs an import end to end and ``cli`` is the command.
"""

from .catalog import DATASETS
from .generic import Columns
from .importer import import_dataset

__all__ = ["DATASETS", "Columns", "import_dataset"]
