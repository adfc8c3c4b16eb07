"""A script's life: its log format, how signals stop it, its exit statuses, and the optional
record log that tests and audits read."""

import logging
import signal
import threading
from typing import TextIO

EXIT_OK = 0
EXIT_FAILED = 1  # a fatal Kafka error, or messages not delivered or not committed
EXIT_USAGE = 2  # a bad flag, variable or client setting (one line says which)
EXIT_CLIENT_STUCK = 3  # the client can never recover by itself: a restart reconnects it


def setup_logging(level: str) -> None:
    """Python's default format, e.g. ``INFO:root:SingleConsumer received: Test message 2886``."""
    logging.basicConfig(level=level)


def stop_on_signals() -> threading.Event:
    """Return an Event that SIGTERM (docker stop) and SIGINT (Ctrl-C) set, for the main loop to
    check at safe points (KeyboardInterrupt could strike between processing and committing).
    A second signal ends the process at once, even inside flush() or close()."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the next signal ends the process
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


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
