"""Video decoding and sampling: a video file becomes the one-second chunks of the design.

``open_chunks(path, ...)`` probes and indexes the file (``probe``), plans its chunks from the
frame timestamps (``sampling``) and returns a ``ChunkStream`` that decodes them once, in order and
in bounded memory, with decord or PyAV (``decoders``), building the views as frames arrive
(``views``) in a worker thread that gives up after a timeout (``watchdog``).
``resize_short_side`` makes the key frame views of the spatial levels.

Real-world files, in short (details in the modules):
- rotation metadata is applied (``VideoInfo.width``/``height`` are the displayed size);
- variable frame rate: chunks follow timestamps; 10-bit and other formats become 8-bit RGB;
- truncated or damaged files: the intact frames are used if at least one decodes (an MP4 cut
  before its index cannot be opened: ``CorruptVideoError``); a listed frame that fails to decode
  is replaced by the frame before it;
- anything else unusable raises a ``pipeline.errors.VideoError`` subclass naming the file, and a
  decode that makes no progress for ``timeout_s`` raises ``DecodeTimeoutError``.
"""

from .chunks import Chunk, ChunkStream, open_chunks
from .probe import VideoInfo
from .sampling import ChunkPlan, plan_chunks
from .views import resize_short_side

__all__ = ["Chunk", "ChunkPlan", "ChunkStream", "VideoInfo", "open_chunks", "plan_chunks", "resize_short_side"]
