"""Feature store: round trips, settings checks, crash and concurrency safety, and the batched reader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.store import reader as store_reader
from pipeline.store.claims import Claims
from pipeline.store import shards as shard_files
from pipeline.errors import DamagedShardError, StoreError
from pipeline.feature_kinds import BY_NAME
from pipeline.store import FeatureStore, StoreSettings, VideoRecord, file_signature

SETTINGS = {"feature_version": 1, "levels": {"coarse": {"short_side": 448}}, "max_chunks": 0}
REPO = Path(__file__).resolve().parents[1]


def record(key: str, rows: int = 3, **changes: object) -> VideoRecord:
    values = dict(key=key, fps=25.0, frames=rows * 25, width=64, height=48, duration=float(rows),
                  decoder="pyav", size=1000, mtime=1.7e9)
    return VideoRecord(**{**values, **changes})


def features(rows: int, seed: int, kinds=("spatial_coarse", "temporal_slow", "temporal_fast", "nss")) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal((rows, BY_NAME[k].width or 5)).astype(np.float32) for k in kinds}


def expected(feats: dict, kind: str) -> np.ndarray:
    return feats[kind].astype(np.float16 if kind != "nss" else np.float32)


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore.open(tmp_path / "store", SETTINGS)


def fill(store: FeatureStore, n: int, flush_videos: int = 3) -> dict[str, dict]:
    written = {}
    with store.writer(flush_videos=flush_videos) as writer:
        for i in range(n):
            key = f"videos/clip {i}.mp4"
            written[key] = features(1 + i % 4, seed=i)
            writer.add(record(key, rows=1 + i % 4), written[key], range(1 + i % 4))
    return written


def test_round_trip_in_any_order(store: FeatureStore) -> None:
    written = fill(store, 11)
    assert len(store.shards()) == 4  # 3 + 3 + 3 + 2 videos
    keys = [k for i, k in enumerate(written) if i != 4][::-1]  # a gap and reversed order
    table = FeatureStore.open(store.root).read(["spatial_coarse", "nss", "temporal_fast"], keys)
    assert table.keys == keys
    assert table.offsets[-1] == sum(len(written[k]["nss"]) for k in keys)
    for key in keys:
        for kind in ("spatial_coarse", "nss", "temporal_fast"):
            np.testing.assert_array_equal(table.features[kind][table.rows(key)], expected(written[key], kind))
    assert table.features["spatial_coarse"].dtype == np.float16
    assert table.features["nss"].dtype == np.float32
    twice = store.read(["nss"], keys[:1] * 2)  # a key asked for twice gets its rows twice
    np.testing.assert_array_equal(twice.features["nss"], np.concatenate([expected(written[keys[0]], "nss")] * 2))


def test_each_video_rows_are_hashed_once_per_read(store: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    written = fill(store, 5)
    hashed = []
    monkeypatch.setattr(store_reader, "row_checksum", lambda rows: hashed.append(len(rows)) or
                        shard_files.row_checksum(rows))
    keys = list(written)
    store.read(["nss", "temporal_fast"], [*keys, keys[0], keys[3]])  # two keys asked for twice
    assert sorted(hashed) == sorted(len(written[key]["nss"]) for key in keys for _ in range(2))


def test_read_all_and_records(store: FeatureStore) -> None:
    written = fill(store, 5)
    table = store.read(["temporal_slow"])
    assert table.keys == sorted(written)
    cached = store.cached()
    assert cached["videos/clip 2.mp4"] == record("videos/clip 2.mp4", rows=3,
                                                 kinds=("spatial_coarse", "temporal_slow", "temporal_fast", "nss"))


def test_reader_blocks_split_and_scatter(store: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    written = fill(store, 9, flush_videos=9)
    monkeypatch.setattr(store_reader, "MAX_BLOCK_ROWS", 4)
    monkeypatch.setattr(store_reader, "MAX_GAP_ROWS", 1)
    keys = list(np.random.default_rng(0).permutation(list(written))[:7])
    table = store.read(["temporal_fast"], keys)
    for key in keys:
        np.testing.assert_array_equal(table.features["temporal_fast"][table.rows(key)],
                                      expected(written[key], "temporal_fast"))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 6)), min_size=1, max_size=12),
       st.integers(1, 8), st.integers(0, 5))
def test_read_segments_matches_naive_copy(segments: list, block_rows: int, gap_rows: int) -> None:
    source = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    segs, dst = [], 0
    for start, rows in segments:
        rows = min(rows, 50 - start)
        if rows > 0:
            segs.append((start, rows, dst))
            dst += rows
    with h5py.File("mem.h5", "w", driver="core", backing_store=False) as f:
        ds = f.create_dataset("x", data=source)
        out = np.full((dst, 3), -1, dtype=np.float32)
        old = store_reader.MAX_BLOCK_ROWS, store_reader.MAX_GAP_ROWS
        store_reader.MAX_BLOCK_ROWS, store_reader.MAX_GAP_ROWS = block_rows, gap_rows
        try:
            store_reader.read_segments(ds, segs, out)
        finally:
            store_reader.MAX_BLOCK_ROWS, store_reader.MAX_GAP_ROWS = old
    naive = np.concatenate([source[s:s + r] for s, r, _ in segs]) if segs else out
    np.testing.assert_array_equal(out, naive)


def test_other_settings_are_refused_naming_the_keys(store: FeatureStore) -> None:
    other = json.loads(json.dumps(SETTINGS))
    other["levels"]["coarse"]["short_side"] = 64
    with pytest.raises(StoreError, match=r"levels\.coarse\.short_side: 448 vs\. 64"):
        FeatureStore.open(store.root, other)
    reopened = FeatureStore.open(store.root, dict(reversed(SETTINGS.items())))  # key order is not a difference
    assert reopened.settings == StoreSettings.of(SETTINGS) and reopened.settings.values == SETTINGS
    manifest = json.loads((store.root / "manifest.json").read_text())
    assert manifest["settings_hash"] == reopened.settings.hash
    assert "h5py" in manifest["versions"]


def test_store_settings_are_their_json_form_named_by_its_hash() -> None:
    settings = StoreSettings.of({"clip": (32, 224), "levels": {"coarse": {"short_side": 448}}})
    assert settings.values == {"clip": [32, 224], "levels": {"coarse": {"short_side": 448}}}  # as the manifest holds
    assert settings == StoreSettings.of({"levels": {"coarse": {"short_side": 448}}, "clip": [32, 224]})
    assert len(settings.hash) == 64 and StoreSettings.of({}).hash != settings.hash
    assert settings.differences(StoreSettings.of({**settings.values, "clip": [16, 224]})) == ["clip: [32,224] vs. [16,224]"]


def test_read_only_open(tmp_path: Path, store: FeatureStore) -> None:
    with pytest.raises(StoreError, match="manifest.json missing"):
        FeatureStore.open(tmp_path / "nowhere")
    with pytest.raises(StoreError, match="read-only"):
        FeatureStore.open(store.root).writer()


def test_missing_keys_and_kinds_are_errors(store: FeatureStore) -> None:
    with store.writer() as writer:
        writer.add(record("a"), features(3, 0, kinds=("temporal_slow",)), range(3))
    with pytest.raises(StoreError, match="not in the store"):
        store.read(["temporal_slow"], ["a", "b"])
    with pytest.raises(StoreError, match="'a' has no 'spatial_fine'"):
        store.read(["spatial_fine"], ["a"])
    with pytest.raises(StoreError, match="unknown feature kind"):
        store.read(["spatial_medium"], ["a"])


@pytest.mark.parametrize("bad, message", [
    ({"spatial_coarse": np.zeros((2, 10))}, r"must be \(rows, 7168\)"),
    ({"spatial_coarse": np.zeros((2, 7168)), "temporal_fast": np.zeros((3, 256))}, "same, non-zero number of rows"),
    ({"temporal_fast": np.full((2, 256), np.nan)}, "non-finite"),
    ({"temporal_fast": np.full((2, 256), 1e6)}, "beyond float16"),
    ({"colour": np.zeros((2, 3))}, "unknown feature kind"),
    ({}, "no features"),
])
def test_invalid_rows_are_refused(store: FeatureStore, bad: dict, message: str) -> None:
    with store.writer() as writer, pytest.raises(StoreError, match=message):
        writer.add(record("a"), bad, [0, 1])
    assert store.shards() == []


def test_newest_copy_of_a_key_wins(store: FeatureStore) -> None:
    with store.writer() as writer:
        writer.add(record("a", size=1), features(2, 0), range(2))
        writer.add(record("b"), features(2, 1), range(2))
    newer = features(4, 2)
    with store.writer() as writer:
        writer.add(record("a", rows=4, size=2), newer, range(4))
    table = store.read(["spatial_coarse"], ["a", "b"])
    np.testing.assert_array_equal(table.features["spatial_coarse"][table.rows("a")], expected(newer, "spatial_coarse"))
    assert store.cached()["a"].size == 2


def test_a_key_added_twice_in_one_writer_goes_to_a_new_shard(store: FeatureStore) -> None:
    with store.writer(flush_videos=10) as writer:
        writer.add(record("a"), features(3, 0), range(3))
        writer.add(record("a"), features(3, 1), range(3))
    assert len(store.shards()) == 2
    np.testing.assert_array_equal(store.read(["nss"], ["a"]).features["nss"], expected(features(3, 1), "nss"))


def test_partial_shards_are_never_read(store: FeatureStore) -> None:
    fill(store, 2, flush_videos=2)
    (shard,) = store.shards()
    live = store.root / f"shard-99999999999999999999-{shard_files.HOST}-{os.getpid()}-abcd.h5.tmp"
    dead = store.root / f"shard-99999999999999999999-{shard_files.HOST}-999999999-abcd.h5.tmp"
    for tmp in (live, dead):
        shutil.copy(shard, tmp)
    with h5py.File(live, "r+") as f:  # a copy that would shadow the real shard if it were read
        f["spatial_coarse"][...] = 0
    reader = FeatureStore.open(store.root)
    assert reader.shards() == [shard]
    assert np.abs(reader.read(["spatial_coarse"]).features["spatial_coarse"]).max() > 0
    store.writer()  # cleans up after dead writers of this host, never live ones
    assert live.exists() and not dead.exists()


def test_a_shard_of_other_settings_is_an_error(store: FeatureStore, tmp_path: Path) -> None:
    other = FeatureStore.open(tmp_path / "other", {**SETTINGS, "max_chunks": 5})
    fill(other, 1)
    shutil.copy(other.shards()[0], store.root)
    with pytest.raises(StoreError, match="belongs to another store"):
        store.cached()


def test_failures_keep_the_latest_reason_until_success(store: FeatureStore) -> None:
    with store.writer() as writer:
        writer.fail("a", "first\nreason")
        writer.fail("b", "broken, \"quoted\"")
        writer.fail("a", "second reason")
    assert store.failures() == {"a": "second reason", "b": 'broken, "quoted"'}
    with store.writer() as writer:
        writer.add(record("a"), features(2, 0), range(2))
    assert store.failures() == {"b": 'broken, "quoted"'}


def test_leaving_the_writer_on_an_error_keeps_the_videos_added(store: FeatureStore) -> None:
    with pytest.raises(KeyboardInterrupt), store.writer(flush_videos=100) as writer:
        writer.add(record("a"), features(2, 0), range(2))
        raise KeyboardInterrupt
    assert list(store.cached()) == ["a"]


def test_chunk_start_seconds_round_trip_and_are_checked(store: FeatureStore) -> None:
    with store.writer() as writer:
        writer.add(record("a", rows=2), features(2, 0), [0, 2])
        writer.add(record("b", rows=3), features(3, 1), [1, 4, 7])
        for seconds in ([0], [1, 1], [-1, 0], [0.0, 1.0]):
            with pytest.raises(StoreError, match="chunk start seconds"):
                writer.add(record("c", rows=2), features(2, 2), seconds)
    seconds = FeatureStore.open(store.root).chunk_seconds(["b", "a"])
    assert {k: v.tolist() for k, v in seconds.items()} == {"b": [1, 4, 7], "a": [0, 2]}


def test_shards_without_chunk_seconds_still_read_but_give_no_seconds(store: FeatureStore,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    written = fill(store, 2, flush_videos=2)
    with h5py.File(store.shards()[0], "a") as f:  # as a shard written before the seconds (and checksums) were
        del f["index/chunk_second"], f["index/xxh3"]  # recorded: store format 1
        f.attrs["format"] = 1
    reopened = FeatureStore.open(store.root)
    assert reopened.read(["nss"]).offsets[-1] == sum(len(w["nss"]) for w in written.values())
    warned, = [r.getMessage() for r in caplog.records if "without damage detection" in r.getMessage()]
    assert warned.startswith(f"{store.root}: 1 shard(s) were written before shards carried checksums")
    with pytest.raises(StoreError, match="extract them into a new store"):
        reopened.chunk_seconds(list(written))


def test_stale_files_are_reported(store: FeatureStore, tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 10)
    size, mtime = file_signature(video)
    with store.writer() as writer:
        writer.add(record("v", size=size, mtime=mtime), features(1, 0), range(1))
    assert store.stale({"v": video}) == []
    video.write_bytes(b"y" * 11)
    assert store.stale({"v": video}) == ["v"]


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from pipeline.store import FeatureStore, VideoRecord
    name, n = sys.argv[1], int(sys.argv[2])
    store = FeatureStore.open(sys.argv[3], {"concurrency": True})
    with store.writer(flush_videos=2) as writer:
        for i in range(n):
            key = f"{name}-{i}"
            writer.add(VideoRecord(key, 25.0, 50, 64, 48, 2.0, "pyav", 1, 0.0),
                       {"temporal_fast": np.full((2, 256), i, dtype=np.float32)}, [0, 1])
            writer.fail(f"{name}-failed-{i}", "boom")
""")


@pytest.mark.slow
def test_concurrent_writers_do_not_corrupt_the_store(tmp_path: Path) -> None:
    root, n = tmp_path / "shared", 20
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, name, str(n), str(root)], env=env)
             for name in ("left", "right")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = FeatureStore.open(root)
    keys = [f"{name}-{i}" for name in ("left", "right") for i in range(n)]
    assert sorted(store.cached()) == sorted(keys)
    table = store.read(["temporal_fast"], keys)
    assert [int(table.features["temporal_fast"][table.rows(k)][0, 0]) for k in keys] == list(range(n)) * 2
    assert sorted(store.failures()) == sorted(f"{name}-failed-{i}" for name in ("left", "right") for i in range(n))
    assert len(store.shards()) == 2 * n // 2 and not list(root.glob("*.tmp"))


# -- claims: several extraction processes on one store ------------------------------------------------------

def test_a_claim_is_held_by_one_process_until_released(tmp_path: Path) -> None:
    with Claims(tmp_path) as first, Claims(tmp_path) as second:
        assert first.take("a.mp4") and not second.take("a.mp4") and second.take("b.mp4")
        assert first.extractors_here() == 1  # both are this process
    with Claims(tmp_path) as third:
        assert third.take("a.mp4")  # released on exit
    assert sorted(p.name for p in (tmp_path / "claims").iterdir()) == []


def test_the_claims_of_a_dead_process_are_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with Claims(tmp_path) as claims:
        assert claims.take("x") and claims.take("y") and claims.take("z")
        owners = {"x": {"host": shard_files.HOST, "pid": int(dead.stdout)},  # this host, a pid that ended
                  "y": {"host": "elsewhere", "pid": 1},  # another host, no heartbeat for an hour
                  "z": {"host": "elsewhere", "pid": 1}}  # another host, heartbeat just now
        held = dict(zip("xyz", claims.held))
        claims.held.clear()  # as if another process held them
        for key, owner in owners.items():
            held[key].write_text(json.dumps(owner))
        os.utime(held["y"], (0, 1e9))
        assert claims.take("x") and claims.take("y") and not claims.take("z")


@pytest.mark.parametrize("change, problem", [
    (lambda f: f["index/row_start"].__setitem__(1, 0), "row ranges do not tile the rows in order"),
    (lambda f: f["index/row_count"].__setitem__(0, 9), "row ranges do not tile"),
    (lambda f: (f.__delitem__("nss"), f.create_dataset("nss", data=np.zeros((2, 5), np.float32))),
     r"nss is \(2, 5\) float32, its index says 3 rows"),
])
def test_an_index_that_disagrees_with_its_arrays_is_damage(store: FeatureStore, change, problem: str) -> None:
    """Checked even in shards without checksums (format 1): the index must tile the arrays exactly."""
    fill(store, 2, flush_videos=2)
    shard = store.shards()[0]
    with h5py.File(shard, "a") as f:
        del f["index/xxh3"]
        f.attrs["format"] = 1
        change(f)
    with pytest.raises(DamagedShardError, match=problem) as caught:
        FeatureStore.open(store.root).cached()
    assert caught.value.shard == shard and str(shard) in str(caught.value)


def test_changed_index_bytes_fail_the_index_digest(store: FeatureStore) -> None:
    fill(store, 2, flush_videos=2)
    with h5py.File(store.shards()[0], "a") as f:
        f["index/mtime"][0] += 1  # a plausible value: only the digest can tell
    with pytest.raises(DamagedShardError, match="its index fails its checksum"):
        FeatureStore.open(store.root).cached()
