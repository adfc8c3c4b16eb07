"""What the fault scenarios share: the apps as processes, an outside witness, clocks, figures.

- :class:`Apps` runs producer.py and the consumers as real child processes (as in Docker) and
  kills whatever is still running when the test ends, pass or fail.
- :func:`kcat_read` and :func:`kcat_produce` use kcat, a client independent of the code under
  test (a C program, not the Python binding), to say what is really in a topic and to write
  records the apps would never write.
- :class:`Tail` follows log files from a thread and stamps every new line with the time it
  appeared: the apps' logs carry no timestamps, and a stall is a gap between two stamps.
- :class:`Figures` is the one line of numbers each scenario reports.
"""

from __future__ import annotations

import array
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIGURES_FILE = ROOT / "build" / "fault-figures.json"

Record = tuple[int, int, str]  # partition, offset, message id ("-" for a poison record)


# --------------------------------------------------------------------------------------------
# The apps as processes
# --------------------------------------------------------------------------------------------


def app_env(bootstrap: str, topic: str, **extra: str) -> dict[str, str]:
    """The caller's environment minus every app setting, plus the cluster and topic to use."""
    prefixes = ("KAFKA_", "BATCH_", "SINGLE_", "PRODUCER_", "LOG_LEVEL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(PYTHONUNBUFFERED="1", KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_TOPIC=topic)
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT dumps every thread's stack: see App.wait()
    env.update(extra)
    return env


class App:
    """One script as a child process; its log (stdout and stderr) goes to ``<dir>/<name>.log``."""

    def __init__(self, script: str, name: str, args: Iterable[object], env: dict, dir: Path):
        self.name = name
        self.started_at = time.monotonic()
        self.log_path = dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / script), *map(str, args)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit status; fails the test (after a SIGKILL) if it is still running."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            native = self.dump_stacks()
            self.close()
            raise AssertionError(
                f"{self.name} still running after {timeout:.0f} s; its log ends with:\n"
                + self.tail()
                + (f"\n--- its C threads:\n{native}" if native else "")
            ) from None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (a graceful stop, like `docker stop`), then the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def dump_stacks(self) -> str:
        """Where every thread is: the C stacks (gdb, if installed) go to ``<name>.native`` and
        are returned condensed; then SIGABRT makes Python's faulthandler write the Python
        stacks to the log, and the process exits. A hang inside librdkafka shows only as a
        Python thread waiting in a Kafka call; the C stacks say what librdkafka waits for."""
        summary = ""
        if self.alive():
            native = native_stacks(self.process.pid)
            if native:
                self.log_path.with_suffix(".native").write_text(native)
                summary = condense_stacks(native)
        self.signal(signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        return summary

    def close(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def require_alive(self) -> None:
        if not self.alive():
            raise AssertionError(
                f"{self.name} exited with {self.process.returncode}; its log ends with:\n"
                + self.tail()
            )


def native_stacks(pid: int) -> str:
    """gdb's backtrace of every thread of a live process ('' without gdb or on failure)."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return ""
    command = [gdb, "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt 30"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout if "#0 " in done.stdout else ""


THREAD = re.compile(r'^Thread \d+ \(.*"([^"]*)"\):$')
FRAME = re.compile(r"^#\d+\s+(?:0x[0-9a-f]+ in )?([\w.]+) \(")


def condense_stacks(native: str, depth: int = 7) -> str:
    """One line per thread: its name and innermost `depth` functions, innermost first, less
    the C library's own (``__futex...``, ``cnd_timedwait``): what waits, not how."""
    lines: list[str] = []
    for line in native.splitlines():
        if thread := THREAD.match(line):
            lines.append(f"{thread[1]}:")
        elif lines and (frame := FRAME.match(line)) and lines[-1].count(" < ") < depth - 1:
            name = frame[1]
            if name.startswith(("_", "cnd_", "pthread_", "epoll_", "poll")):
                continue
            lines[-1] += f" {name}" if lines[-1].endswith(":") else f" < {name}"
    return "\n".join(lines)


class Apps:
    """Starts apps in a test's directory; on exit kills every one still running (`with`)."""

    def __init__(self, dir: Path, bootstrap: str) -> None:
        self.dir = dir
        self.bootstrap = bootstrap
        self.started: list[App] = []

    def start(self, script: str, name: str, topic: str, *args: object, **env: str) -> App:
        app = App(script, name, args, app_env(self.bootstrap, topic, **env), self.dir)
        self.started.append(app)
        return app

    def producer(self, name: str, topic: str, *args: object) -> App:
        """producer.py at full speed, logging every acknowledged message to <name>.acked."""
        return self.start(
            "producer.py",
            name,
            topic,
            "--interval",
            0,
            "--quiet",
            "--progress-interval",
            1,
            "--delivered-log",
            self.dir / f"{name}.acked",
            *args,
        )

    def batch_consumer(
        self, name: str, topic: str, group: str, *args: object, record: str = ""
    ) -> App:
        """batch_message_consumer.py logging what it processed to <record or name>.processed."""
        return self.start(
            "batch_message_consumer.py",
            name,
            topic,
            "--group-id",
            group,
            "--batch-window",
            1,
            "--processed-log",
            self.dir / f"{record or name}.processed",
            *args,
        )

    def single_consumer(
        self, name: str, topic: str, group: str, *args: object, record: str = ""
    ) -> App:
        return self.start(
            "single_message_consumer.py",
            name,
            topic,
            "--group-id",
            group,
            "--processed-log",
            self.dir / f"{record or name}.processed",
            *args,
        )

    def __enter__(self) -> Apps:
        return self

    def __exit__(self, *exc: object) -> None:
        for app in self.started:
            app.close()


class Supervised:
    """An app that is started again when it exits with `restart_on`, as Docker's restart
    policy (restart: unless-stopped) would; any other exit fails the test."""

    def __init__(self, start: Callable[[int], App], restart_on: int) -> None:
        self._start = start
        self.restart_on = restart_on
        self.runs = [start(0)]

    @property
    def app(self) -> App:
        return self.runs[-1]

    @property
    def restarts(self) -> int:
        return len(self.runs) - 1

    def require_alive(self) -> None:
        if not self.app.alive() and self.app.process.returncode == self.restart_on:
            self.runs.append(self._start(len(self.runs)))
        self.app.require_alive()

    def stop(self, timeout: float = 60) -> int:
        self.require_alive()
        return self.app.stop(timeout)

    def log(self) -> str:
        return "".join(run.log() for run in self.runs)


def read_records(path: Path) -> list[Record]:
    """The lines ``<partition> <offset> <message id>`` of a --delivered-log / --processed-log."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        partition, offset, message_id = line.split(" ")
        records.append((int(partition), int(offset), message_id))
    return records


SUMMARY = re.compile(
    r"Sent (\d+), delivered (\d+), failed (\d+), not delivered \(still queued\) (\d+)"
)


def producer_summary(log: str) -> dict[str, int]:
    """The producer's last line: sent, delivered, failed, undelivered."""
    found = SUMMARY.findall(log)
    if not found:
        raise AssertionError("no 'Sent N, delivered N, ...' summary in the producer log")
    names = ("sent", "delivered", "failed", "undelivered")
    return dict(zip(names, map(int, found[-1]), strict=True))


def wait_until(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    alive: Iterable[App | Supervised] = (),
    every: float = 0.05,
    required: bool = True,
) -> float | None:
    """Poll until `condition()` is true; return the seconds it took.

    Fails on timeout (or returns None if not `required`: the caller's assertions then say
    what is missing), and at once if one of the `alive` apps has exited. On a failing timeout
    the `alive` apps are ended with SIGABRT, which writes every thread's stack to their logs,
    and the message shows the end of each log.
    """
    started = time.monotonic()
    while not condition():
        for app in alive:
            app.require_alive()
        if time.monotonic() - started > timeout:
            if not required:
                return None
            apps = [app.app if isinstance(app, Supervised) else app for app in alive]
            native = {app.name: app.dump_stacks() for app in apps}
            logs = "".join(
                f"\n--- {app.name}'s log ends with:\n{app.tail(40)}"
                + (f"\n--- {app.name}'s C threads:\n{native[app.name]}" if native[app.name] else "")
                for app in apps
            )
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{logs}")
        time.sleep(every)
    return time.monotonic() - started


def end_offsets(kafka_cluster: Any, topic: str) -> dict[int, int]:
    """End offset of every partition that has records (an empty one has nothing to commit)."""
    from localcluster import admin

    ends = admin.end_offsets(kafka_cluster.admin, topic, [0, 1, 2], timeout=15)
    return {p: end for p, end in ends.items() if end > 0}


def committed_offsets(kafka_cluster: Any, group: str, topic: str) -> dict[int, int]:
    from localcluster import admin

    return admin.committed_offsets(kafka_cluster.bootstrap, group, topic, timeout=15)


# --------------------------------------------------------------------------------------------
# The outside witness: kcat
# --------------------------------------------------------------------------------------------


def kcat_read(bootstrap: str, topic: str, fmt: str = "%p %o %k\n", timeout: float = 180) -> str:
    """Everything in the topic from the beginning to its end, formatted by kcat's -f."""
    command = ["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q"]
    run = subprocess.run([*command, "-f", fmt], capture_output=True, timeout=timeout, check=False)
    if run.returncode != 0:
        raise AssertionError(f"kcat could not read {topic}: {run.stderr.decode(errors='replace')}")
    return run.stdout.decode("utf-8", "surrogateescape")


@dataclass
class TopicContent:
    """What kcat found in a topic: the key at each (partition, offset)."""

    keys: dict[tuple[int, int], str]

    @classmethod
    def read(cls, bootstrap: str, topic: str) -> TopicContent:
        keys = {}
        for line in kcat_read(bootstrap, topic).splitlines():
            partition, offset, key = line.split(" ", 2)
            keys[(int(partition), int(offset))] = key
        return cls(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def duplicates(self) -> int:
        """Records whose key (the producer's message id) is in the topic more than once."""
        return sum(n - 1 for n in Counter(self.keys.values()).values() if n > 1)

    def missing(self, acked: Iterable[Record]) -> list[Record]:
        """Acknowledged records not at the partition and offset their ack reported (or, for
        an ack without offset, -1, not in the partition at all)."""
        by_partition: dict[int, set[str]] = {}
        for (p, _), key in self.keys.items():
            by_partition.setdefault(p, set()).add(key)
        return [
            r
            for r in acked
            if (
                r[2] not in by_partition.get(r[0], ()) if r[1] < 0 else self.keys.get(r[:2]) != r[2]
            )
        ]


class TopicIndex:
    """What kcat finds in a big topic, in little memory: per partition, the hash of the key
    at each offset (8 bytes a record instead of ~150 for a dict entry).

    For millions of records. Two different keys have the same 64-bit hash with a
    probability of 2**-64, so "the acknowledged key is at its offset" stays a real check.
    """

    def __init__(self, bootstrap: str, topic: str, timeout: float = 300) -> None:
        self.hashes: dict[int, array.array] = {}
        self.count = 0
        self.offset_unknown = 0  # set by check()
        self.gaps = 0  # offsets without a record (none expected: no compaction, no txns)
        command = ["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q"]
        with subprocess.Popen(
            [*command, "-f", "%p %o %k\n"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as kcat:
            timer = threading.Timer(timeout, kcat.kill)
            timer.start()
            try:
                for line in kcat.stdout:  # type: ignore[union-attr]
                    partition, offset, key = line.rstrip(b"\n").split(b" ", 2)
                    hashes = self.hashes.setdefault(int(partition), array.array("q"))
                    gap = int(offset) - len(hashes)
                    if gap > 0:
                        hashes.extend([0] * gap)
                        self.gaps += gap
                    hashes.append(hash(key))
                    self.count += 1
            finally:
                timer.cancel()
            errors = kcat.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
        if kcat.returncode != 0:
            raise AssertionError(f"kcat could not read {topic} ({kcat.returncode}): {errors}")

    def __len__(self) -> int:
        return self.count

    def duplicates(self) -> int:
        """Records whose key is in the topic more than once (idempotence should make it 0)."""
        distinct = set()
        for hashes in self.hashes.values():
            distinct.update(hashes)
        if self.gaps:
            distinct.discard(0)
        return self.count - len(distinct)

    def check(self, acked_logs: Iterable[Path]) -> tuple[int, list[str]]:
        """Reads --delivered-log files; returns (acknowledged, those not in the topic).

        An acknowledged record must be at the offset its ack gave; an offset of -1 (ack of
        a retry the broker had already written, offset not reported) must be in its
        partition. ``self.offset_unknown`` counts those.
        """
        acked, missing = 0, []
        self.offset_unknown = 0
        for path in acked_logs:
            with path.open("rb") as f:
                for line in f:
                    partition, offset, key = line.rstrip(b"\n").split(b" ", 2)
                    acked += 1
                    hashes = self.hashes.get(int(partition), array.array("q"))
                    o = int(offset)
                    if o < 0:
                        self.offset_unknown += 1
                        found = hash(key) in hashes
                    else:
                        found = o < len(hashes) and hashes[o] == hash(key)
                    if not found:
                        missing.append(line.decode().strip())
        return acked, missing


def kcat_produce(
    bootstrap: str,
    topic: str,
    partition: int,
    value: bytes | None,
    key: bytes | None,
    headers: Iterable[bytes],
    scratch: Path,
) -> None:
    """Write one record with kcat, exactly as given: any bytes, an empty or a null value.

    kcat sends a file given as argument as one message, whatever bytes it holds; an empty
    file sends nothing, so empty and null values go through stdin as ``<key>|`` (with -Z an
    empty value becomes NULL, a tombstone).
    """
    command: list[str | bytes] = ["kcat", "-b", bootstrap, "-P", "-t", topic, "-p", str(partition)]
    command += ["-X", "enable.idempotence=true"]
    for header in headers:
        command += ["-H", header]
    stdin = None
    if value:
        scratch.write_bytes(value)
        if key is not None:
            command += ["-k", key]
        command.append(str(scratch))
    else:
        if key is None or b"|" in key or b"\n" in key:
            raise ValueError("an empty or null value needs a key without '|' or newline")
        command += ["-K", "|", *(["-Z"] if value is None else [])]
        stdin = key + b"|\n"
    run = subprocess.run(command, input=stdin, capture_output=True, timeout=30, check=False)
    if run.returncode != 0:
        raise AssertionError(f"kcat could not produce: {run.stderr.decode(errors='replace')}")


# --------------------------------------------------------------------------------------------
# Clocks: when did each line appear?
# --------------------------------------------------------------------------------------------


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


def longest_gap(times: Iterable[float], start: float | None = None, end: float | None = None):
    """The longest time without an event, counting from `start` and up to `end` if given.

    Returns (seconds, from, to).
    """
    stamps = sorted(times)
    if start is not None:
        stamps = [start, *(t for t in stamps if t >= start)]
    if end is not None:
        stamps = [*(t for t in stamps if t <= end), end]
    best = (0.0, 0.0, 0.0)
    for a, b in itertools.pairwise(stamps):
        if b - a > best[0]:
            best = (b - a, a, b)
    return best


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


@dataclass
class Figures:
    """The numbers one scenario reports; None where a figure does not apply."""

    scenario: str
    test: str = ""
    sent: int | None = None
    acked: int | None = None
    in_topic: int | None = None
    processed: int | None = None
    lost: int | None = None
    duplicates: int | None = None
    longest_stall_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    passed: bool | None = None

    def line(self) -> str:
        def show(value: Any) -> str:
            if value is None:
                return "-"
            return f"{value:.1f}" if isinstance(value, float) else str(value)

        main = " ".join(
            f"{name}={show(getattr(self, name))}"
            for name in (
                "sent",
                "acked",
                "in_topic",
                "processed",
                "lost",
                "duplicates",
                "longest_stall_s",
            )
        )
        extra = " ".join(f"{k}={show(v)}" for k, v in self.extra.items())
        return f"FIGURES {self.scenario}: {main}" + (f" | {extra}" if extra else "")


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def save_figures(figures: list[Figures], started: str) -> None:
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "started": started,
        "machine": machine(),
        "scenarios": [{**asdict(f), "line": f.line()} for f in figures],
    }
    FIGURES_FILE.write_text(json.dumps(document, indent=2) + "\n")
