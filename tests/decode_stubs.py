"""Decoder stand-ins for the decode-pool test, in a module light enough for worker processes to import."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

from pipeline.extract.decoding import DecodeOptions, decode_video


def crashing_decode(path: str, options: DecodeOptions) -> Iterator:
    """Segfault on a path containing 'crash', hang on 'hang', decode anything else."""
    if "crash" in path:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "hang" in path:
        time.sleep(3600)
    yield from decode_video(path, options)
