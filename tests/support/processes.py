"""The apps as child processes (as in Docker): started, signalled, waited for, and cleaned up.

- :func:`app_env` is the environment a script runs in: no app setting of the caller's leaks in.
- :class:`App` is one script as a process logging to a file; :class:`Apps` starts them in a
  test's directory and kills whatever is still running when the test ends, pass or fail.
- :class:`Supervised` restarts an app as Docker's restart policy would.
- :func:`run_script` runs a script to its end and captures its output.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from localcluster.nodes import as_uid

from .stacks import condense_stacks, native_stacks

ROOT = Path(__file__).resolve().parents[2]
APP_SETTINGS = ("KAFKA_", "BATCH_", "SINGLE_", "PRODUCER_", "LOG_", "METRICS_", "LIVENESS_")


def app_env(bootstrap: str | None = None, topic: str | None = None, **extra: str) -> dict[str, str]:
    """The caller's environment minus every app setting, plus the cluster and topic to use
    (each only if given) and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(APP_SETTINGS)}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT dumps every thread's stack: see App.wait()
    if bootstrap:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    if topic:
        env["KAFKA_TOPIC"] = topic
    env.update(extra)
    return env


def command(script: str, args: Iterable[object]) -> list[str]:
    """The command line of one of the scripts, run by this Python."""
    return [sys.executable, str(ROOT / script), *map(str, args)]


def run_script(
    script: str, *args: object, env: dict, timeout: float = 30
) -> subprocess.CompletedProcess:
    """Runs a script to its end (at most `timeout` seconds); its output is captured as text."""
    return subprocess.run(
        command(script, args),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class App:
    """One script as a child process; its log (stdout and stderr) goes to ``<dir>/<name>.log``."""

    def __init__(
        self,
        script: str,
        name: str,
        args: Iterable[object],
        env: dict,
        dir: Path,
        uid: int | None = None,
    ) -> None:
        self.name = name
        self.started_at = time.monotonic()
        self.log_path = dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            as_uid(uid) + command(script, args),
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


class Apps:
    """Starts apps in a test's directory; on exit kills every one still running (`with`)."""

    def __init__(self, dir: Path, bootstrap: str = "") -> None:
        self.dir = dir
        self.bootstrap = bootstrap
        self.started: list[App] = []

    def launch(self, script: str, name: str, *args: object, env: dict, uid: int | None = None):
        """A script run in exactly the environment `env` (as `uid`: see :func:`as_uid`)."""
        app = App(script, name, args, env, self.dir, uid)
        self.started.append(app)
        return app

    def start(
        self, script: str, name: str, topic: str, *args: object, uid: int | None = None, **env: str
    ) -> App:
        """A script run on this cluster and `topic`, with `env` added to :func:`app_env`'s."""
        return self.launch(script, name, *args, env=app_env(self.bootstrap, topic, **env), uid=uid)

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

    def consumer(
        self,
        script: str,
        name: str,
        topic: str,
        group: str,
        *args: object,
        record: str = "",
        uid: int | None = None,
    ) -> App:
        """A consumer script in `group`, logging what it processed to <record or name>.processed."""
        processed = self.dir / f"{record or name}.processed"
        return self.start(
            script, name, topic, "--group-id", group, "--processed-log", processed, *args, uid=uid
        )

    def batch_consumer(
        self, name: str, topic: str, group: str, *args: object, record: str = ""
    ) -> App:
        """batch_message_consumer.py with a batch window of 1 s."""
        script = "batch_message_consumer.py"
        return self.consumer(script, name, topic, group, "--batch-window", 1, *args, record=record)

    def single_consumer(
        self, name: str, topic: str, group: str, *args: object, record: str = ""
    ) -> App:
        return self.consumer("single_message_consumer.py", name, topic, group, *args, record=record)

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
