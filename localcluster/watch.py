"""`python -m localcluster status --watch`: the status redrawn every interval until Ctrl-C.

On a terminal the view is redrawn in place (rich's Live); otherwise each refresh is printed
after the last, as plain text, so scripts and tests can read them.
"""

from __future__ import annotations

import argparse
import itertools
import time

from rich.console import Console, Group, RenderableType
from rich.live import Live

from localcluster.cluster import LocalCluster, Quorum
from localcluster.status import gather
from localcluster.status_view import render, show

# Each ask of the quorum starts a JVM (MetadataQuorumCommand, about 1.5 s of a core): on every
# 2 s refresh that would load the machine the brokers run on, while a leader changes seldom.
# The view says how old the answer it shows is.
QUORUM_EVERY = 10.0
QUORUM_TIMEOUT = 15.0
ADMIN_TIMEOUT = 5.0  # per admin call; a pass stops at its first failure, so it stays bounded


class QuorumCache:
    """The controller quorum, asked again once it is `every` seconds old; a failed ask is
    tried again on the next refresh."""

    def __init__(self, cluster: LocalCluster, every: float, timeout: float) -> None:
        self.cluster, self.every, self.timeout = cluster, every, timeout
        self._quorum: Quorum | None = None
        self._asked_at = 0.0

    def get(self) -> Quorum:
        if self._quorum is None or time.monotonic() - self._asked_at >= self.every:
            self._quorum = None
            self._quorum = self.cluster.quorum(timeout=self.timeout)
            self._asked_at = time.monotonic()
        return self._quorum

    def forget(self) -> None:
        """After an outage the leader may be another: the next refresh asks again."""
        self._quorum = None

    def age(self) -> float | None:
        return time.monotonic() - self._asked_at if self._quorum is not None else None


class Watcher:
    """One refresh at a time: gathers a snapshot and renders it with the refresh line."""

    def __init__(
        self, cluster: LocalCluster, groups: list[str], list_all: bool, interval: float
    ) -> None:
        self.cluster, self.interval = cluster, interval
        self.groups, self.list_all = groups, list_all
        self.quorum = QuorumCache(cluster, max(interval, QUORUM_EVERY), QUORUM_TIMEOUT)
        self.client = cluster.admin()

    def refresh(self) -> list[RenderableType]:
        started = time.monotonic()
        snapshot = gather(
            self.cluster, self.client, self.quorum.get, self.groups, self.list_all, ADMIN_TIMEOUT
        )
        snapshot.quorum_age = self.quorum.age()
        if snapshot.unreachable:
            # A client that talked to the cluster while all of it went down may be left knowing
            # no broker for good (librdkafka#5301): the next refresh starts with a fresh one.
            self.client = self.cluster.admin()
            self.quorum.forget()
        took = time.monotonic() - started
        at = time.strftime("%H:%M:%S", time.localtime(snapshot.taken_at))
        footer = f"Refreshed at {at} (in {took:.1f} s), every {self.interval:g} s; Ctrl-C quits"
        return render(snapshot, footer)


def watch(
    cluster: LocalCluster,
    out: Console,
    groups: list[str],
    list_all: bool,
    interval: float,
    iterations: int | None = None,
) -> int:
    """Refreshes every `interval` seconds, `iterations` times or until Ctrl-C; exits 0 either
    way (Ctrl-C is how a watch ends, not a failure)."""
    watcher = Watcher(cluster, groups, list_all, interval)
    refreshes = range(1, iterations + 1) if iterations else itertools.count(1)
    try:
        if out.is_terminal:
            with Live(console=out, auto_refresh=False) as live:
                for n in refreshes:
                    started = time.monotonic()
                    live.update(Group(*watcher.refresh()), refresh=True)
                    pause(n, iterations, started, interval)
        else:
            for n in refreshes:
                started = time.monotonic()
                show(out, watcher.refresh())
                out.print()
                pause(n, iterations, started, interval)
    except KeyboardInterrupt:
        pass
    return 0


def pause(n: int, iterations: int | None, started: float, interval: float) -> None:
    """Sleeps until `interval` after the refresh began, unless that was the last one."""
    if n != iterations:
        time.sleep(max(0.0, started + interval - time.monotonic()))


def seconds(text: str) -> float:
    """--interval's type: a number of seconds above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text}")
    return value


def count(text: str) -> int:
    """--iterations' type: a whole number above 0 (none means until Ctrl-C)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return value
