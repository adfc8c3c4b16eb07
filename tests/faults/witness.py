"""What the fault scenarios share: the apps as processes, an outside witness, clocks, figures.

- :class:`Apps` runs producer.py and the consumers as real child processes (as in Docker) and
  kills whatever is still running when the test ends, pass or fail.
- :func:`witness_read` (and :class:`TopicContent`, :class:`TopicIndex` on top of it) says what
  is really in a topic with Kafka's own Java console consumer, run from the jars the local
  cluster runs on: a client independent of librdkafka, which the code under test uses.
- :func:`produce_raw` writes records the apps would never write (any bytes, empty and null
  values, odd headers), exactly as given.
- :class:`Tail` follows log files from a thread and stamps every new line with the time it
  appeared: the apps' logs carry no timestamps, and a stall is a gap between two stamps.
- :class:`Figures` is the one line of numbers each scenario reports.
"""

from __future__ import annotations

import array
import contextlib
import functools
import itertools
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Full, Queue
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


# --------------------------------------------------------------------------------------------
# The outside witness: Kafka's own Java console consumer
# --------------------------------------------------------------------------------------------

WITNESS_LOG4J2 = Path(__file__).with_name("log4j2-witness.xml")
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
GET_OFFSET_SHELL = "org.apache.kafka.tools.GetOffsetShell"
# ConsoleConsumer's --timeout-ms: it gives up after this long without a record (and exits 0).
IDLE_TIMEOUT_S = 30.0

Witnessed = tuple[int, int, bytes | None, bytes | None]  # partition, offset, key, value


@functools.cache
def kafka_java() -> tuple[str, Path]:
    """The java binary and the folder of Kafka's jars: the ones the local cluster runs on."""
    from localcluster import jars
    from localcluster.cluster import LocalCluster

    return jars.require_java(), LocalCluster(say=lambda _message: None).lib()


def java_tool(main: str, *args: str, brief: bool = False) -> list[str]:
    """The command line of one of Kafka's Java tools; it logs warnings only, to stderr.
    `brief`: a tool that runs for a moment, which the JIT's optimizing tier would only slow."""
    java, lib = kafka_java()
    return [
        java,
        "-Xmx512m",
        "-XX:+UseSerialGC",  # one GC thread: the tools run next to the brokers on few cores
        *(["-XX:TieredStopAtLevel=1"] if brief else []),
        f"-Dlog4j2.configurationFile={WITNESS_LOG4J2}",
        "-cp",
        f"{lib}/*",
        main,
        *args,
    ]


def witness_offsets(bootstrap: str, topic: str, timeout: float = 90) -> dict[int, tuple[int, int]]:
    """(first offset, end offset) of every partition of the topic, as Kafka's GetOffsetShell
    (Java AdminClient, ListOffsets) reports them: where a read from the beginning to the end
    starts and stops. Fails if the topic is unknown or a partition did not answer."""
    deadline = time.monotonic() + timeout
    pattern = re.escape(topic)  # --topic takes a regular expression (a full match)
    args = ["--bootstrap-server", bootstrap, "--topic", pattern, "--time"]
    runs = {
        spec: subprocess.Popen(
            java_tool(GET_OFFSET_SHELL, *args, spec, brief=True),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for spec in ("earliest", "latest")
    }
    answers: dict[str, dict[int, int]] = {}
    try:
        for spec, run in runs.items():
            try:
                out, err = run.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"GetOffsetShell gave no {spec} offsets of {topic} in {timeout:.0f} s"
                ) from None
            offsets = {}
            for line in out.decode().splitlines():
                name, partition, offset = line.rsplit(":", 2)
                if name == topic:
                    offsets[int(partition)] = int(offset)
            errors = err.decode(errors="replace")
            # A partition whose offset it could not get is left out with "Skip getting offsets
            # for topic-partition ..." on stderr, and the exit status is still 0.
            if run.returncode != 0 or not offsets or "Skip getting offsets" in errors:
                raise AssertionError(
                    f"GetOffsetShell could not get the {spec} offsets of {topic}"
                    f" (exit status {run.returncode}, got {offsets}):\n{errors}"
                )
            answers[spec] = offsets
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
                run.wait()
    first, end = answers["earliest"], answers["latest"]
    if set(first) != set(end) or set(end) != set(range(len(end))):
        raise AssertionError(f"partitions of {topic} missing: first offsets {first}, ends {end}")
    return {p: (first[p], end[p]) for p in sorted(end)}


class PartitionReader:
    """Reads exactly `count` records of one partition, from offset `start`, with Kafka's own
    ConsoleConsumer: a Java client, independent of librdkafka (which the apps use).

    ConsoleConsumer is given the partition (--partition, --offset): it joins no group and
    commits nothing. --max-messages stops it after `count` records; --timeout-ms
    (`idle_timeout`) ends it when no record came for that long, and it then exits with 0 all
    the same, so the number of records is what says whether it got to the end: fewer fail.

    Its DefaultMessageFormatter writes each record as ``Offset:<n><sep><key>[<sep><value>]<end>``
    with the key's and value's bytes as they are, and a null one as the null literal. The
    separator, the end and the null literal are random tokens drawn for this read, after the
    records were written: a record holding one has a chance of 2**-64, so any bytes (newlines,
    tabs, the word "null", non-UTF-8) come back exact. Each offset must be the one after the
    previous, starting at `start`: the output is checked, not trusted.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partition: int,
        start: int,
        count: int,
        values: bool = True,
        idle_timeout: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.topic, self.partition, self.start, self.count = topic, partition, start, count
        self.values = values
        self.idle_timeout = idle_timeout
        self.received = 0
        self.killed = False
        token = secrets.token_hex(8)
        self.sep, self.end, self.null = (f"~{token}~{m}~".encode() for m in "sen")
        formatting = {
            "print.offset": "true",
            "print.key": "true",
            "print.value": str(values).lower(),  # false: no value, nor its separator
            "print.partition": "false",
            "print.timestamp": "false",
            "print.headers": "false",
            "key.separator": self.sep.decode(),  # between all the fields printed
            "line.separator": self.end.decode(),
            "null.literal": self.null.decode(),
        }
        args = [
            "--bootstrap-server", bootstrap, "--topic", topic,
            "--partition", str(partition), "--offset", str(start),
            "--max-messages", str(count), "--timeout-ms", str(int(idle_timeout * 1000)),
        ]  # fmt: skip
        for name, value in formatting.items():
            args += ["--formatter-property", f"{name}={value}"]
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            java_tool(CONSOLE_CONSUMER, *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )

    def batches(self, chunk: int = 1 << 18) -> Iterator[list[Witnessed]]:
        """The records as they come, in lists (one per `chunk` bytes of output); fails at the end
        if there were fewer than `count` or the tool failed."""
        stdout = self.process.stdout
        assert stdout is not None
        sep, end, null, width = self.sep, self.end, self.null, 3 if self.values else 2
        partition, offset, partial = self.partition, self.start, b""
        while data := stdout.read(chunk):  # blocks for a whole chunk: few, big parses
            records = (partial + data).split(end)
            partial = records.pop()
            batch: list[Witnessed] = []
            for record in records:
                fields = record.split(sep, 2)
                if len(fields) != width or fields[0] != b"Offset:%d" % offset:
                    raise self.failure(f"unexpected output where offset {offset} was due:"
                                       f" {record[:300]!r}")  # fmt: skip
                key = None if fields[1] == null else fields[1]
                value = None if width == 2 or fields[2] == null else fields[2]
                batch.append((partition, offset, key, value))
                offset += 1
            self.received = offset - self.start
            yield batch
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise self.failure("it closed its output but did not exit") from None
        if partial:
            raise self.failure(f"its output ends inside a record: {partial[:300]!r}")
        if self.received < self.count:
            idle = f"it ended early (it gives up after {self.idle_timeout:.0f} s without a record)"
            raise self.failure("killed at the read's time limit" if self.killed else idle)
        if self.process.returncode != 0:
            raise self.failure(f"exit status {self.process.returncode}")

    def failure(self, what: str) -> AssertionError:
        self.kill()
        self.stderr.seek(0)
        errors = self.stderr.read().decode(errors="replace").strip().splitlines()
        return AssertionError(
            f"Kafka's ConsoleConsumer read {self.received} of the {self.count} records of"
            f" {self.topic} [{self.partition}] from offset {self.start}: {what}"
            "\n--- its stderr ends with:\n" + "\n".join(errors[-30:])
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.killed = True
            self.process.kill()

    def close(self) -> None:
        self.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()


def witness_read(
    bootstrap: str, topic: str, values: bool = True, timeout: float = 180
) -> Iterator[Witnessed]:
    """Every record of the topic from the beginning to the end, as Kafka's own Java console
    consumer reads it: (partition, offset, key, value), key and value as bytes (None if null),
    in offset order within each partition.

    The first and end offsets come first (:func:`witness_offsets`); then one ConsoleConsumer
    per non-empty partition (:class:`PartitionReader`) reads exactly up to its end, all at
    once, each parsed on a thread of its own. The records stream: a caller that keeps little
    of each reads millions in little memory. Fails (AssertionError, with the tool's stderr) if
    a partition comes back short or the whole read takes more than `timeout` seconds.
    ``values=False`` leaves the values out (None), for callers that need only the keys.
    """
    deadline = time.monotonic() + timeout
    ranges = witness_offsets(bootstrap, topic, timeout)
    readers: list[PartitionReader] = []
    try:
        for partition, (first, end) in ranges.items():
            if end > first:
                readers.append(
                    PartitionReader(bootstrap, topic, partition, first, end - first, values)
                )
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    yield from merged(readers, deadline - time.monotonic())


def merged(readers: list[PartitionReader], timeout: float) -> Iterator[Witnessed]:
    """The readers' records as they come, each reader parsed on its own thread; all readers
    are killed when `timeout` runs out, and when the caller stops early or one fails."""
    batches: Queue[list[Witnessed] | BaseException | None] = Queue(maxsize=4 * len(readers) + 1)
    stop = threading.Event()

    def put(item: list[Witnessed] | BaseException | None) -> None:
        while not stop.is_set():  # the queue is bounded: wait for room, unless abandoned
            with contextlib.suppress(Full):
                batches.put(item, timeout=0.2)
                return

    def pump(reader: PartitionReader) -> None:
        try:
            for batch in reader.batches():
                put(batch)
            put(None)
        except BaseException as exc:
            put(exc)

    threads = [
        threading.Thread(target=pump, args=(r,), name=f"witness-{r.partition}", daemon=True)
        for r in readers
    ]
    limit = threading.Timer(max(0.0, timeout), lambda: [r.kill() for r in readers])
    limit.daemon = True
    limit.start()
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            item = batches.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield from item
    finally:
        stop.set()
        limit.cancel()
        for reader in readers:
            reader.kill()
        for thread in threads:
            thread.join(10)
        for reader in readers:
            reader.close()


@dataclass
class TopicContent:
    """What the witness found in a topic: the key at each (partition, offset), decoded as UTF-8
    (undecodable bytes kept as surrogates; None for a null key)."""

    keys: dict[tuple[int, int], str | None]

    @classmethod
    def read(cls, bootstrap: str, topic: str) -> TopicContent:
        keys = {}
        for partition, offset, key, _ in witness_read(bootstrap, topic, values=False):
            text = None if key is None else key.decode("utf-8", "surrogateescape")
            keys[(partition, offset)] = text
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
    """What the witness finds in a big topic, in little memory: per partition, the hash of the
    key at each offset (8 bytes a record instead of ~150 for a dict entry).

    For millions of records: they stream from :func:`witness_read` (keys only). Two different
    keys have the same 64-bit hash with a probability of 2**-64, so "the acknowledged key is
    at its offset" stays a real check.
    """

    def __init__(self, bootstrap: str, topic: str, timeout: float = 300) -> None:
        self.hashes: dict[int, array.array] = {}
        self.count = 0
        self.offset_unknown = 0  # set by check()
        # Offsets without a record: those before the first offset, if retention ever deleted
        # the log's start (none expected here). The witness fails on gaps after it.
        self.gaps = 0
        started = time.monotonic()
        for partition, offset, key, _ in witness_read(bootstrap, topic, False, timeout):
            hashes = self.hashes.get(partition)
            if hashes is None:
                hashes = self.hashes[partition] = array.array("q")
            gap = offset - len(hashes)
            if gap > 0:
                hashes.extend([0] * gap)
                self.gaps += gap
            hashes.append(hash(key))  # a null key's hash is not an empty key's
            self.count += 1
        self.read_s = time.monotonic() - started

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


# partition, key, value, headers
RawRecord = tuple[int, bytes | None, bytes | None, Iterable[bytes]]


def produce_raw(
    bootstrap: str, topic: str, records: Iterable[RawRecord], timeout: float = 60
) -> None:
    """Writes records exactly as given, in order, each to its partition: any bytes, an empty
    value, or None for a null value (a tombstone). Headers are ``name=value`` (``name`` alone
    for a null value) with any bytes as the value.

    An idempotent confluent-kafka Producer, in-process: the writer need not be independent of
    the code under test, only the reader (:func:`witness_read`) that checks what was written.
    Idempotence keeps each partition's order through retries. Fails unless every record was
    acknowledged.
    """
    from confluent_kafka import Producer

    failed: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failed.append(f"[{message.partition()}] {error}")

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    sent = 0
    for partition, key, value, headers in records:
        pairs = []
        for header in headers:
            name, has_value, data = header.partition(b"=")
            pairs.append((name.decode(), data if has_value else None))
        producer.produce(
            topic, value, key, partition=partition, headers=pairs, on_delivery=delivered
        )
        producer.poll(0)
        sent += 1
    left = producer.flush(timeout)
    if left or failed:
        raise AssertionError(
            f"{sent - left - len(failed)} of {sent} records acknowledged in {topic};"
            f" {left} not delivered within {timeout:.0f} s; failed: {failed}"
        )


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
