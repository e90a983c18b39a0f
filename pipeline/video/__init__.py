"""Video decoding and sampling: a video file becomes the one-second chunks of the design.

``open_chunks(path, ...)`` probes and indexes the file, plans its chunks (``sampling``) and returns
a ``ChunkStream`` that decodes them on demand, in bounded memory, with decord or PyAV
(``decoders``). ``resize_short_side`` makes the key frame views of the spatial levels.
Every failure is a ``pipeline.errors.VideoError`` subclass naming the file.
"""

from .chunks import Chunk, ChunkStream, open_chunks
from .probe import VideoInfo
from .sampling import ChunkPlan, plan_chunks
from .views import resize_short_side

__all__ = ["Chunk", "ChunkPlan", "ChunkStream", "VideoInfo", "open_chunks", "plan_chunks", "resize_short_side"]
