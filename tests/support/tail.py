"""Following log files: a thread stamps every new line with the time it appeared.

The apps' logs carry no timestamps, and a stall is a gap between two stamps
(:func:`support.figures.longest_gap`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path


class Followed:
    """A file followed by :class:`Tail`: new lines counted by key, per poll, with the time."""

    def __init__(self, path: Path, key: Callable[[str], str | None], keep: bool) -> None:
        self.path = path
        self.key = key
        self.keep = keep
        self.offset = 0
        self.partial = b""
        self.chunks: list[tuple[float, Counter]] = []  # (time seen, lines per key)
        self.lines: list[tuple[float, str]] = []  # only if keep
        self.count = 0

    def poll(self, now: float) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        self.offset += len(data)
        data = self.partial + data
        complete, _, self.partial = data.rpartition(b"\n")
        if not complete:
            self.partial = data
            return
        counts: Counter = Counter()
        for raw in complete.split(b"\n"):
            line = raw.decode("utf-8", "replace")
            k = self.key(line)
            if k is None:
                continue
            counts[k] += 1
            if self.keep:
                self.lines.append((now, line))
        if counts:
            self.count += sum(counts.values())
            self.chunks.append((now, counts))

    def times(self, key: str | None = None) -> list[float]:
        """When lines (of `key`, or any) were seen."""
        return [t for t, counts in list(self.chunks) if (key is None or counts.get(key))]

    def counted(self, keys: Iterable[str], start: float, end: float) -> int:
        wanted = set(keys)
        return sum(
            n
            for t, counts in list(self.chunks)
            if start <= t <= end
            for k, n in counts.items()
            if k in wanted
        )


def partition_of(line: str) -> str | None:
    """Key for record logs: the partition, the first field."""
    return line.split(" ", 1)[0] if line else None


def any_line(line: str) -> str | None:
    return "*" if line else None


class Tail:
    """Follows files from a thread, every `every` seconds (so times are +- that much)."""

    def __init__(self, every: float = 0.02) -> None:
        self.every = every
        self.files: list[Followed] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tail", daemon=True)
        self._lock = threading.Lock()
        self._thread.start()

    def follow(
        self, path: Path, key: Callable[[str], str | None] = any_line, keep: bool = False
    ) -> Followed:
        followed = Followed(path, key, keep)
        with self._lock:
            self.files.append(followed)
        return followed

    def poll(self) -> None:
        with self._lock:
            now = time.monotonic()
            for followed in self.files:
                followed.poll(now)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.poll()
