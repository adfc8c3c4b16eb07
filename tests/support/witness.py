"""The outside witness: what is really in a topic, read by Kafka's own Java console consumer.

It runs from the jars the local cluster runs on (:mod:`support.kafka_tools`): a client
independent of librdkafka, which the code under test uses. :func:`witness_read` reads a whole
topic; :mod:`support.records` holds what its reads are checked against.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from queue import Full, Queue

from .kafka_tools import CONSOLE_CONSUMER, java_tool, witness_offsets

# ConsoleConsumer's --timeout-ms: it gives up after this long without a record (and exits 0).
IDLE_TIMEOUT_S = 30.0
# Below this many records the JIT's optimizing tier costs more than it saves: with C1 alone a
# topic of 6,000 to 9,000 records read in 4.9 s, not 6.5 to 7.3 (idle machine). Millions keep it.
BRIEF_BELOW = 200_000

Witnessed = tuple[int, int, bytes | None, bytes | None]  # partition, offset, key, value


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
            java_tool(CONSOLE_CONSUMER, *args, brief=count < BRIEF_BELOW),
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
