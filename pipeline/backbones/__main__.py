"""``python -m pipeline.backbones``: the same command as ``vqa-weights``."""

from .cli import main

main()
