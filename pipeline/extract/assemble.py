"""From decoder events to stored videos: each event goes to its video's job, chunks into backbone batches
(:mod:`pipeline.extract.batches`), and each video whose rows are all back is handed to the store's writer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pipeline.backbones import Backbones
from pipeline.errors import DeviceError
from pipeline.extract.batches import Batcher
from pipeline.extract.decoding import ChunkDecoded, Decoded, DecodeEvent, DecodeFailed, Opened, describe
from pipeline.extract.device_step import stop_if_device_broken
from pipeline.extract.plan import VideoJob
from pipeline.store import ShardWriter


def assemble(events: Iterable[DecodeEvent], jobs: list[VideoJob], backbones: Backbones, batch_size: int,
             writer: ShardWriter) -> Iterator[tuple[str, str | None]]:
    """Turn decode events into stored videos; yield ``(key, error or None)`` as each video ends.

    A failure of one video (decoding, models, unusable rows) is yielded and the run goes on. A store that
    cannot be written, or a device that broke, raises: going on would only lose more work.
    """
    batcher = Batcher(backbones, batch_size)
    for event in events:
        job = jobs[event.task]
        try:
            if job.error is None:  # else it already failed: the rest of its events mean nothing
                _handle(batcher, job, event)
        finally:
            if isinstance(event, ChunkDecoded) and event.chunk.release:  # its planes are read (converted) or not wanted
                event.chunk.release()
        yield from _store(batcher.finished(), writer)
    batcher.flush()
    yield from _store(batcher.finished(), writer)


def _handle(batcher: Batcher, job: VideoJob, event: DecodeEvent) -> None:
    """One decode event of a video still in the run; a failure fails that video, a broken device stops the run."""
    try:
        match event:
            case Opened(info=info):
                job.info = info
            case ChunkDecoded(chunk=chunk):
                batcher.add(job, chunk)
            case Decoded():
                batcher.decoded(job)
            case DecodeFailed(reason=reason):
                stop_if_device_broken(reason, job.path)  # decoding on the device (workers 0) hit it
                batcher.fail(job, reason)
    except DeviceError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of one video must not stop the run
        stop_if_device_broken(exc, job.path)
        batcher.fail(job, describe(exc, job.path))


def _store(jobs: list[VideoJob], writer: ShardWriter) -> Iterator[tuple[str, str | None]]:
    """Hand each ended video that did not fail to ``writer``; yield ``(key, error or None)`` for each."""
    for job in jobs:
        if job.error is None:
            try:
                record, rows, seconds = job.result()
            except Exception as exc:  # noqa: BLE001 - unusable rows fail this video only
                job.error = describe(exc, job.path)
            else:
                writer.add(record, rows, seconds)
        yield job.key, job.error
