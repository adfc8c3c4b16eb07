"""Where a hung process's threads wait: gdb's backtrace of its C threads, and a condensed view.

A hang inside librdkafka shows only as a Python thread waiting in a Kafka call; the C stacks
say what librdkafka waits for (:meth:`support.processes.App.dump_stacks` uses these).
"""

from __future__ import annotations

import re
import shutil
import subprocess


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
