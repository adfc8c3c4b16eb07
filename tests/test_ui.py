"""`make ui` (python -m localcluster ui): kaskade in a real terminal, a detached tmux session,
on the session's cluster. Settled first: final-1-topic, both groups and each partition's
committed offset, end and lag, read off the screen and compared with what the brokers say.
Then while the demo's apps run: the consumers appear as the groups' members, and the record
count grows.

tmux is Debian's (.ci/run installs it) and kaskade comes from requirements-ui.txt (`make test`
and `make ui` install it): without either the test skips with one line, and under CI
(CI=true) it fails instead.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from kafka_app.settings import DEFAULT_BATCH_GROUP_ID, DEFAULT_SINGLE_GROUP_ID
from localcluster import admin
from support.processes import ROOT, app_env, run_script
from support.waits import wait_until

TOPIC = "final-1-topic"
BATCH, SINGLE = DEFAULT_BATCH_GROUP_ID, DEFAULT_SINGLE_GROUP_ID
REQUIRED = os.environ.get("CI") == "true"
T = TypeVar("T")


def skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"the kaskade test is required under CI, but {reason}", pytrace=False)
    pytest.skip(f"kaskade test: {reason}")


class Terminal:
    """A command in a detached 200x50 tmux session, on a tmux server of its own (never the
    user's): keys go in with send-keys, the screen comes out with capture-pane. The pane stays
    after the command exits, so its last words can be read."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        # Its socket in a directory of its own, short (a socket path has at most 107 bytes),
        # and removed at the end: tmux leaves the file behind when its server exits.
        self.dir = Path(tempfile.mkdtemp(prefix="kaskade-test-"))
        self.socket = str(self.dir / "tmux")
        self.log = log
        self.tmux(
            "start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
            "new-session", "-d", "-x", "200", "-y", "50", "-c", str(ROOT), *command,
            env=env,
        )  # fmt: skip

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        # -f /dev/null: the user's ~/.tmux.conf cannot change the size, keys or status line.
        result = subprocess.run(
            ["tmux", "-f", "/dev/null", "-S", self.socket, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if result.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-l", text)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def exited(self) -> bool:
        return self.tmux("list-panes", "-F", "#{pane_dead}").strip() == "1"

    def wait_for(self, find: Callable[[str], T | None], what: str, timeout: float = 30) -> T:
        """Polls the screen until `find(screen)` gives something, and returns it; on timeout,
        fails with the last screen and the end of kaskade's log."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            found = find(screen)
            if found:
                return found
            if time.monotonic() > deadline:
                log = self.log.read_text() if self.log.is_file() else "(no log)\n"
                raise AssertionError(
                    f"no {what} on kaskade's screen after {timeout:.0f} s; the screen:\n"
                    f"{visible(screen)}\n--- kaskade's log ends with:\n"
                    + "".join(log.splitlines(keepends=True)[-15:])
                )
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def visible(screen: str) -> str:
    """The screen without its empty lines and table rows, for failure messages."""
    return "\n".join(line for line in screen.splitlines() if line.strip(" │"))


def row(screen: str, first: str) -> list[str] | None:
    """The cells of the first table row on the screen whose first cell is `first`. Cells are
    split on blanks; a modal's box (│) is a boundary, so what shows around it is left out."""
    for line in screen.splitlines():
        for segment in line.split("│"):
            cells = segment.split()
            if cells and cells[0] == first:
                return cells
    return None


def rows(screen: str, first: str) -> list[list[str]]:
    return [
        cells
        for line in screen.splitlines()
        for segment in line.split("│")
        if (cells := segment.split()) and cells[0] == first
    ]


def filter_box(screen: str) -> str | None:
    """What the Filter Topics box holds: the line under its title, inside its frame."""
    lines = screen.splitlines()
    for title, line in itertools.pairwise(lines):
        if "Filter Topics" in title:
            return line.split("│")[2].strip()
    return None


def tab_rows(header: str, count: int) -> Callable[[str], str | None]:
    """A wait_for condition: the screen, once the details tab whose table has the column
    `header` shows `count` rows of batch-group and single-group."""

    def shown(screen: str) -> str | None:
        found = len(rows(screen, BATCH) + rows(screen, SINGLE))
        return screen if header in screen and found == count else None

    return shown


def topic_row_ready(screen: str) -> list[str] | None:
    """final-1-topic's row once its group figures are in (Lag "≈N", not "…" while loading)."""
    cells = row(screen, TOPIC)
    return cells if cells and len(cells) == 8 and cells[7].startswith("≈") else None


@pytest.fixture
def kaskade(kafka_cluster, tmp_path: Path) -> Iterator[Callable[[], Terminal]]:
    """Starts `python -m localcluster ui` in tmux, as `make ui` does; kills tmux at the end."""
    if shutil.which("tmux") is None:
        skip_or_fail("tmux is not installed (Debian: apt-get install tmux; .ci/run installs it)")
    if importlib.util.find_spec("kaskade") is None:
        skip_or_fail("kaskade is not installed (`make ui` or `make test` installs it)")
    # The app settings are left out: on the local cluster, `ui` finds its address itself
    # (LOCALCLUSTER_HOME and the port offset are kept), as `make ui` after `make up` would.
    env = app_env(None if kafka_cluster.managed else kafka_cluster.bootstrap)
    # kaskade's settings and log in the test's directory: a user's settings.yaml (keys,
    # refresh interval) cannot change what the test sees, and the log shows on a failure.
    env["KASKADE_SETTINGS"] = str(tmp_path / "kaskade-settings.yaml")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    started: list[Terminal] = []

    def start() -> Terminal:
        command = [sys.executable, "-m", "localcluster", "ui"]
        started.append(Terminal(command, env, tmp_path / "state" / "kaskade" / "kaskade.log"))
        return started[-1]

    try:
        yield start
    finally:
        for terminal in started:
            terminal.close()


def expected_offsets(kafka_cluster, group: str) -> dict[int, tuple[int, int, int]]:
    """Per partition: the group's committed offset, the end offset, and the lag, as the
    brokers answer."""
    ends = admin.end_offsets(kafka_cluster.admin, TOPIC, [0, 1, 2])
    committed = admin.committed_offsets(kafka_cluster.bootstrap, group, TOPIC)
    return {p: (offset, ends[p], ends[p] - offset) for p, offset in committed.items()}


def members(kafka_cluster, group: str) -> list[str]:
    description = kafka_cluster.admin.describe_consumer_groups([group])[group].result(timeout=10)
    return [member.client_id for member in description.members]


def settle_groups(kafka_cluster) -> None:
    """Both groups drained, then 20 new records: batch-group reads 10 of them, single-group 5,
    so their lags are 10 and 15, and every partition has a committed offset (kaskade sums the
    lag of committed partitions only; `localcluster status` counts the others from 0).

    First no member may be left in either group: a consumer killed without leaving stays a
    member until its session times out (45 s), and until then the drains below would be
    given no partition, and exit idle."""

    def no_member_left() -> bool:
        return not any(members(kafka_cluster, group) for group in (BATCH, SINGLE))

    wait_until(no_member_left, 60, f"no member left in {BATCH} and {SINGLE}")
    env = app_env(kafka_cluster.bootstrap)

    def run(script: str, *args: object) -> None:
        result = run_script(script, *args, env=env, timeout=90)
        assert result.returncode == 0, f"{script} {args} failed:\n{result.stderr[-3000:]}"

    # 30 records, keyed at random: each partition gets some (all but 1 in 60,000 times).
    run("producer.py", "--count", 30, "--interval", 0, "--quiet")
    run("batch_message_consumer.py", "--idle-exit", 3, "--batch-window", 1)
    run("single_message_consumer.py", "--idle-exit", 3)
    run("producer.py", "--count", 20, "--interval", 0, "--quiet")
    run("batch_message_consumer.py", "--max-messages", 10, "--batch-window", 1)
    run("single_message_consumer.py", "--max-messages", 5)


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_ui_shows_the_topic_the_groups_their_lag_and_the_demo_apps_as_members(
    kafka_cluster, kaskade, scripts
) -> None:
    settle_groups(kafka_cluster)
    expected = {group: expected_offsets(kafka_cluster, group) for group in (BATCH, SINGLE)}
    lags = {group: sum(lag for *_, lag in parts.values()) for group, parts in expected.items()}
    assert all(len(parts) == 3 for parts in expected.values()), f"uncommitted: {expected}"
    assert lags == {BATCH: 10, SINGLE: 15}, expected

    ui = kaskade()
    topics = ui.wait_for(topic_row_ready, f"{TOPIC} row with its group figures")
    # The header names the first bootstrap server: the local cluster's own port, offset or not.
    first_server = kafka_cluster.bootstrap.split(",")[0]
    assert first_server in ui.screen().splitlines()[1], visible(ui.screen())
    assert topics[1:4] == ["3", "2", "2"], topics  # partitions, replicas, in sync
    records = int(topics[6].lstrip("≈"))

    ui.keys("/")  # filter the topics by name: final-1-topic comes first, under the cursor
    ui.wait_for(lambda screen: "Filter Topics" in screen, "filter box")
    ui.type(TOPIC)
    # Enter only once the box shows it all: Enter is the screen's binding, handled at once,
    # while the box may not have taken in every typed key yet (it once filtered on "f").
    ui.wait_for(lambda screen: filter_box(screen) == TOPIC, "topic name in the filter box")
    ui.keys("Enter")
    ui.wait_for(lambda screen: f"Topics [*{TOPIC}*]" in screen, "filtered topic list")
    ui.keys("d")  # describe; its tabs: Partitions, Configurations, Groups, ...
    ui.wait_for(lambda screen: f"Topic Details [{TOPIC}]" in screen, "topic details")
    ui.keys("l", "l")
    # The Groups tab: ID, Coordinator, State, Assignor (blank for a group without members),
    # Partitions, Members, Lag.
    screen = ui.wait_for(tab_rows("Coordinator", 2), "Groups tab rows")
    for group in (BATCH, SINGLE):
        cells = row(screen, group)
        assert cells and cells[-3:] == ["3", "0", str(lags[group])], (group, cells)

    ui.keys("l")  # Group Offsets: Group, Partition, Committed, End, Lag
    screen = ui.wait_for(tab_rows("Committed", 6), "Group Offsets tab rows")
    for group in (BATCH, SINGLE):
        shown = {int(p): (int(c), int(e), int(lag)) for _, p, c, e, lag in rows(screen, group)}
        assert shown == expected[group], f"{group}:\n{visible(screen)}"

    # Now as during `make demo`: its app services, 2 replicas each (docker-compose.yml), named
    # as it names them. Back on the topic list, kaskade refreshes itself every 5 s.
    apps = [
        scripts(script, name, env=app_env(kafka_cluster.bootstrap, KAFKA_CLIENT_ID=name))
        for script, service in [
            ("producer.py", "producer"),
            ("batch_message_consumer.py", "batch-consumer"),
            ("single_message_consumer.py", "single-consumer"),
        ]
        for name in (f"{service}-1", f"{service}-2")
    ]
    ui.keys("Escape")
    live = ui.wait_for(
        lambda screen: (cells := topic_row_ready(screen)) and cells[5] == "4" and cells,
        f"{TOPIC} with 4 members",
        timeout=90,
    )
    assert int(live[6].lstrip("≈")) > records, (records, live)
    ui.keys("d")
    ui.wait_for(lambda screen: f"Topic Details [{TOPIC}]" in screen, "topic details")
    ui.keys("l", "l", "l", "l")  # Group Members: Group, Client ID, Member ID, Host, Assignment
    screen = ui.wait_for(tab_rows("Client ID", 4), "Group Members tab rows")
    for group, service in [(BATCH, "batch-consumer"), (SINGLE, "single-consumer")]:
        members = {cells[1]: cells[4:] for cells in rows(screen, group)}  # client id: [0, 2]
        assert sorted(members) == [f"{service}-1", f"{service}-2"], visible(screen)
        assigned = sorted(
            int(p) for cells in members.values() for p in re.findall(r"\d+", " ".join(cells))
        )
        assert assigned == [0, 1, 2], (
            f"{group}'s partitions, each to one member:\n{visible(screen)}"
        )

    ui.keys("Escape")
    ui.wait_for(topic_row_ready, "topic list")
    ui.keys("C-c")  # quits, as the footer says (^c Quit)
    ui.wait_for(lambda _: ui.exited(), "exit after Ctrl-C", timeout=10)
    # SIGTERM, as `make demo`'s Ctrl-C: the consumers leave their groups (see settle_groups).
    assert [app.stop() for app in apps] == [0] * len(apps), [app.tail() for app in apps]


def test_ui_without_a_broker_says_to_start_one_and_stops() -> None:
    """Nothing listens on the port (bound, then released): one line, exit status 1, within
    the probe's few seconds, where kaskade itself would show an empty table for good."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "localcluster", "ui"],
        cwd=ROOT,
        env=app_env(f"127.0.0.1:{port}"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result
    assert result.stdout == "", result.stdout
    assert result.stderr == (
        f"localcluster: error: no Kafka broker answers at 127.0.0.1:{port}:"
        " run `make up` or `make demo` first\n"
    )
    assert time.monotonic() - started < 15
