"""A script's life: its log format, how signals stop it, its exit statuses, and the optional
record log that tests and audits read."""

import datetime
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TextIO

EXIT_OK = 0
EXIT_FAILED = 1  # a fatal Kafka error, or messages not delivered or not committed
EXIT_USAGE = 2  # a bad flag, variable or client setting (one line says which)
EXIT_CLIENT_STUCK = 3  # the client can never recover by itself: a restart reconnects it
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def setup_logging(level: str, form: str = "text") -> None:
    """Python's default format, e.g. ``INFO:root:SingleConsumer received: Test message 2886``;
    or for log pipelines (``--log-format json``) the same fields as a JSON object per line."""
    handler = logging.StreamHandler()
    if form == "json":
        handler.setFormatter(JsonLines())
    logging.basicConfig(level=level, handlers=[handler])


class JsonLines(logging.Formatter):
    """``{"time": ..., "level": "INFO", "logger": "root", "message": "..."}``, one per line."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def counted(n: int, noun: str) -> str:
    """``1 message``, ``2 messages``: log lines read as sentences."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def stop_on_signals(last_words: Callable[[], str] = lambda: "") -> threading.Event:
    """An Event that the first SIGTERM (docker stop) or SIGINT (Ctrl-C) sets, for the main loop
    to check at safe points (KeyboardInterrupt could strike between processing and committing).
    A second one ends the process at once, even inside flush(), after ``last_words()``, with
    status 128 + its number, as a shell reports it. Python runs handlers on the main thread,
    maybe waiting in librdkafka: so each signal's number goes to a socket a thread reads."""
    stop = threading.Event()
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: None)  # replaces the default; the thread acts
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    watch = threading.Thread(  # holds the writer too: a collected socket closes its fd
        target=_act_on_signals, args=(reader, writer, stop, last_words), name="signals", daemon=True
    )
    watch.start()
    return stop


def _act_on_signals(
    reader: socket.socket, writer: socket.socket, stop: threading.Event, last_words: Callable
) -> None:
    for signum in iter(lambda: reader.recv(1), b""):
        if signum[0] not in STOP_SIGNALS:  # e.g. a test runner's SIGALRM
            continue
        if not stop.is_set():
            stop.set()
            continue
        name = signal.Signals(signum[0]).name
        logging.warning(f"Second {name}: exiting at once. {last_words()}".strip())
        os._exit(128 + signum[0])


class RecordLog:
    """Optional audit log (``--delivered-log``, ``--processed-log``): a line ``<partition>
    <offset> <message_id>`` per record (``-``: a poison record's id; -1: offset not reported),
    passed to the OS at once, so that a crash loses no line already written."""

    def __init__(self, path: str | None) -> None:
        self._file: TextIO | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self.enabled = self._file is not None  # False: hot loops skip what write() would ignore

    def write(self, partition: int, offset: int | None, message_id: str | None) -> None:
        if self._file is not None:
            at = -1 if offset is None else offset
            self._file.write(f"{partition} {at} {message_id or '-'}\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Heartbeat:
    """When the main loop last turned; liveness (/healthz) fails when that is too long ago."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def beat(self) -> None:
        self.at = time.monotonic()
