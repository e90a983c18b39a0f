"""Extraction: from a video to the feature store, one module per step.

1. :mod:`.plan`: which videos the store lacks, at which levels (:class:`~.plan.VideoJob`), claimed one at a time.
2. :mod:`.decoding`: a video decoded into one-second chunks, reported as typed events; :mod:`.decode_pool`
   runs that in decoder processes, so a crashing decoder fails one video; :mod:`.plane_ring` is the shared
   memory their YUV planes reach the device through.
3. :mod:`.batches`: chunks gathered into backbone batches (spanning videos on an accelerator);
   :mod:`.device_step` moves them to the device and their rows back.
4. :mod:`.assemble`: events to finished videos, handed to the store's writer.
5. :mod:`.run`: one run over these steps, :func:`~.run.extract_videos` (what every command that extracts calls).

:mod:`.heap` keeps the memory freed between chunks in each extraction process (decoder processes and the main one).

The backbones themselves are :class:`pipeline.backbones.Backbones`. This package's ``__init__`` imports nothing:
decoder processes import :mod:`.decode_pool`, and stay free of models and the store.
"""
