"""Claims: which videos of a store a live extraction process is working on, so that several processes (on one
machine or several sharing the store's file system) each take videos no other has taken.

A claim is a file ``<store>/claims/<digest of the key>.claim`` made with an atomic exclusive create and holding
its owner's host and pid; the owner refreshes its mtime (a heartbeat) while it runs and deletes it when its run
ends, after its last shard is committed. A claim whose owner died is taken over: on the owner's host when its
pid is gone, elsewhere when its heartbeat is older than :data:`STALE_S`. Each running process also keeps an
``extractor-<host>-<pid>`` file there, which tells the processes of one host how many share its cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from types import TracebackType

from pipeline.errors import StoreError, describe_os_error
from pipeline.store.shards import HOST, pid_alive

CLAIMS = "claims"
HEARTBEAT_S = 30.0
STALE_S = 600.0  # a claim from another host not refreshed for this long belongs to a dead process


class Claims:
    """This process's claims on the videos of the store at ``root``; a context manager (released on exit)."""

    def __init__(self, root: Path):
        self.folder = root / CLAIMS
        self.me = {"host": HOST, "pid": os.getpid()}
        self.extractor = self.folder / f"extractor-{HOST}-{os.getpid()}"
        self.held: list[Path] = []
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="claims-heartbeat", daemon=True)

    def __enter__(self) -> Claims:
        try:
            self.folder.mkdir(exist_ok=True)
            self.extractor.write_text(json.dumps(self.me))
        except OSError as exc:
            self.extractor.unlink(missing_ok=True)
            raise _claim_error(self.folder, exc) from exc
        self._heartbeat.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._heartbeat.join()
        for path in [*self.held, self.extractor]:
            path.unlink(missing_ok=True)

    def take(self, key: str) -> bool:
        """Claim ``key``; False when another live process holds it (a dead one's claim is taken over)."""
        path = self.folder / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()[:40]}.claim"
        if self._create(path, key):
            return True
        if not self._stale(path):
            return False
        aside = path.with_name(f"{path.name}.{HOST}-{os.getpid()}.stale")
        try:
            os.rename(path, aside)  # of several processes taking it over, exactly one renames it
        except FileNotFoundError:
            return False
        aside.unlink()
        return self._create(path, key)

    def extractors_here(self) -> int:
        """Live extraction processes of this host on this store, this one included."""
        live = 0
        for path in self.folder.glob(f"extractor-{HOST}-*"):
            pid = path.name.rsplit("-", 1)[1]
            live += pid.isdigit() and pid_alive(int(pid))
        return max(1, live)

    def _create(self, path: Path, key: str) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise _claim_error(self.folder, exc) from exc
        self.held.append(path)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps({**self.me, "key": key}))
        except OSError as exc:  # the claim stands (it names no owner: stale), the run stops
            raise _claim_error(self.folder, exc) from exc
        return True

    def _stale(self, path: Path) -> bool:
        try:
            owner = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False  # released meanwhile: the store holds the video now, or the next process claims it
        except (OSError, ValueError):
            return True  # unreadable: its owner died while writing it
        if owner.get("host") == HOST:
            pid = int(owner.get("pid", 0))
            return pid <= 0 or not pid_alive(pid)
        return age > STALE_S

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            for path in [*self.held, self.extractor]:
                try:
                    os.utime(path)
                except OSError:
                    pass  # a claim taken over by another process after all: it does the video too


def _claim_error(folder: Path, exc: OSError) -> StoreError:
    return StoreError(f"{folder.parent}: cannot claim a video in {folder}: {describe_os_error(exc)}; kept: every "
                      "complete shard of the store")
