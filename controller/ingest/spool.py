"""The client's on-disk spool: batches kept while the ingest server is away.

Where it sits: used only by ``controller.ingest.client`` (its sender thread). One file per
batch, named ``<wall-clock ns>-<batch id>.ndjson`` and holding the exact body that was to be
POSTed, so a re-send after a restart carries the same id and the server stores it once.
Files are written atomically (temporary file, fsync, rename) and listed oldest first. The
directory is locked by one client process at a time, and its size is bounded.

What it must not do: touch the network or import anything heavy (the client is imported
by serving processes that count microseconds).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import deque
from pathlib import Path
from typing import IO

SUFFIX = ".ndjson"
_NAME = re.compile(r"^(\d{20})-([A-Za-z0-9._:-]+)\.ndjson$")


class SpoolInUse(ValueError):
    """Another client process holds the spool directory."""


class Spool:
    """A bounded directory of batches waiting to be re-sent, oldest first."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("spool_max_bytes: must be ≥ 1")
        self.path = Path(path)
        self.max_bytes = max_bytes
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"spool_dir {self.path}: cannot create it ({exc.strerror})") from exc
        self._lock_file: IO[bytes] | None = _lock(self.path)
        for leftover in self.path.glob(f"*{SUFFIX}.tmp"):  # a write cut short by a crash
            leftover.unlink(missing_ok=True)
        names = sorted(p.name for p in self.path.iterdir() if _NAME.match(p.name))
        self._files: deque[str] = deque(names)
        self.bytes = sum(_size(self.path / n) for n in names)

    def __len__(self) -> int:
        return len(self._files)

    def put(self, batch_id: str, body: bytes) -> bool:
        """Store one batch; False (nothing written) when it would exceed ``max_bytes``."""
        if self.bytes + len(body) > self.max_bytes:
            return False
        name = f"{time.time_ns():020d}-{batch_id}{SUFFIX}"
        final = self.path / name
        temporary = final.with_name(name + ".tmp")
        with open(temporary, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, final)
        _fsync_dir(self.path)
        self._files.append(name)
        self.bytes += len(body)
        return True

    def oldest(self) -> tuple[str, str, bytes] | None:
        """The oldest waiting batch as ``(file name, batch id, body)``, or None."""
        while self._files:
            name = self._files[0]
            try:
                body = (self.path / name).read_bytes()
            except OSError:  # removed or unreadable behind our back: forget it
                self._files.popleft()
                continue
            match = _NAME.match(name)
            assert match is not None  # only matching names are listed
            return name, match.group(2), body
        return None

    def remove(self, name: str) -> None:
        """Forget a batch that was delivered (or refused for good)."""
        path = self.path / name
        size = _size(path)
        path.unlink(missing_ok=True)
        with contextlib.suppress(ValueError):
            self._files.remove(name)
        self.bytes = max(0, self.bytes - size)

    def close(self) -> None:
        """Release the directory lock."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _lock(path: Path) -> IO[bytes] | None:
    """Hold an exclusive advisory lock on ``path/.lock`` (POSIX; no lock elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    handle = open(path / ".lock", "ab")  # noqa: SIM115 - held open for the client's lifetime
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise SpoolInUse(
            f"spool_dir {path}: in use by another client process; give each process its own"
        ) from exc
    return handle


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not POSIX
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
