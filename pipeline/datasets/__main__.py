"""``python -m pipeline.datasets``: the same command as ``vqa-data``."""

from .cli import main

main()
