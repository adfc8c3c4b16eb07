"""The nemesis of the Jepsen-class tests: network partitions, lossy links and process pauses on
the local cluster, each healed at the end of its window and on any failure.

Partitions: every node of the cluster runs as a uid of its own (LOCALCLUSTER_NODE_UID_BASE),
and an app can too (support.processes), so nftables rules on the owner of a packet's socket
(``meta skuid``) tell them apart although all of them talk over loopback. A rule drops what
one uid sends to another node's listener ports: the inter-node ones (INTERNAL, CONTROLLER) to
cut brokers apart, the EXTERNAL one to cut a client from a broker. This keeps the plain
cluster's listeners and settings, and traffic never leaves loopback. (Loopback aliases cannot
do it: any 127.x address is reached from 127.0.0.1. Per-node network namespaces could, at the
price of other listener addresses than the cluster the other tests use.)

All rules live in one nftables table, which heal() deletes; root only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

from localcluster.cluster import LocalCluster
from localcluster.nodes import listening_ports

TABLE = "kafka_nemesis"
PEER_LISTENERS = ("INTERNAL", "CONTROLLER")  # what brokers and controllers use between them


def available() -> str | None:
    """None if this machine can run the nemesis, else why not, in one line."""
    if os.geteuid() != 0:
        return "needs root (per-node uids, nftables)"
    if shutil.which("nft") is None or shutil.which("setpriv") is None:
        return "needs nft (Debian nftables) and setpriv (util-linux)"
    return None


class Nemesis:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        ports = cluster.ports()
        self.uids = {node.node_id: node.uid for node in cluster.nodes}
        assert None not in self.uids.values(), "start the cluster with LOCALCLUSTER_NODE_UID_BASE"
        self.listeners: dict[int, dict[str, int]] = {}  # node -> listener name -> port
        for node in cluster.nodes:
            named = listening_ports(node.broker, ports).items()
            self.listeners[node.node_id] = {what.split()[-1]: port for port, what in named}
        self.rules: list[str] = []

    # --- rules ----------------------------------------------------------------------------

    def _drop(self, uid: int, ports: list[int], extra: str = "") -> str:
        listed = ", ".join(map(str, sorted(ports)))
        return f"meta skuid {uid} tcp dport {{ {listed} }} {extra}drop"

    def ports(self, node: int, listeners: tuple[str, ...]) -> list[int]:
        return [self.listeners[node][name] for name in listeners]

    def cut(self, a: int, b: int, one_way: bool = False, listeners=PEER_LISTENERS) -> None:
        """Node ``a`` can no longer reach node ``b`` (nor ``b`` reach ``a``, unless one way).
        ``listeners=("INTERNAL",)`` cuts replication only: both still reach the controllers."""
        rules = [self._drop(self.uids[a], self.ports(b, listeners))]
        if not one_way:
            rules.append(self._drop(self.uids[b], self.ports(a, listeners)))
        self._add(rules)

    def isolate(self, node: int) -> None:
        """The node reaches no other node and none reaches it; clients still reach it."""
        for other in self.uids:
            if other != node:
                self.cut(node, other)

    def cut_client(self, uid: int, node: int) -> None:
        """A client running as ``uid`` can no longer reach the node's client listener."""
        self._add([self._drop(uid, self.ports(node, ("EXTERNAL",)))])

    def lossy(self, percent: int) -> None:
        """Drop ``percent`` % of the packets between nodes, at random, both ways."""
        chance = f"numgen random mod 100 < {percent} "
        pairs = [(a, b) for a in self.uids for b in self.uids if a != b]
        drops = [self._drop(self.uids[a], self.ports(b, PEER_LISTENERS), chance) for a, b in pairs]
        self._add(drops)

    def _add(self, rules: list[str]) -> None:
        self.rules += rules
        body = "\n".join(f"    {rule}" for rule in self.rules)
        script = (
            f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"  # replace whatever is there
            f"table inet {TABLE} {{\n  chain out {{\n"
            f"    type filter hook output priority 0; policy accept;\n{body}\n  }}\n}}\n"
        )
        subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True, capture_output=True)

    def heal(self) -> None:
        """Delete every rule (idempotent)."""
        self.rules = []
        subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True, check=False)

    @contextlib.contextmanager
    def window(self, seconds: float) -> Iterator[None]:
        """Keep the rules added inside the block for ``seconds`` from its start, then heal;
        heal at once if the block fails."""
        started = time.monotonic()
        try:
            yield
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        finally:
            self.heal()


@contextlib.contextmanager
def paused(pid: int, seconds: float) -> Iterator[float]:
    """SIGSTOP the process for ``seconds``; SIGCONT at the end, whatever happens. Yields the
    moment it was stopped."""
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        yield stopped
        time.sleep(max(0.0, seconds - (time.monotonic() - stopped)))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
