"""Before `up` formats storage or starts a JVM: every port it will bind is free, or one line says
which node wanted it, who holds it, and the way out."""

from __future__ import annotations

import pwd
from pathlib import Path

from localcluster.errors import ClusterError
from localcluster.holders import Holder, holders, listened_on
from localcluster.nodes import MARKER, port_in_use

COMMAND_SHOWN = 200  # characters of a holder's command line (a JVM's runs to thousands)
OFFSET_STEP = 100


def busy(port: int) -> bool:
    """Taken for a broker binding 127.0.0.1, or answering clients of localhost on ::1 instead."""
    return port_in_use(port) or listened_on(port)


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _cli(home: Path, default_home: Path, command: str) -> str:
    prefix = "" if home == default_home else f"LOCALCLUSTER_HOME={home} "
    return f"`{prefix}python -m localcluster {command}`"


def explain(port: int, found: list[Holder], default_home: Path) -> tuple[str, str]:
    """Who holds the port, and how to stop it: only what /proc shows, never a guess."""
    if not found:
        return (
            "a process this check cannot name (no listening socket on it in /proc/net/tcp)",
            f"`ss -ltnp` or `lsof -i :{port}` may name it",
        )
    holder = found[0]
    if holder.pid is None:
        return (
            f"a process of {_user(holder.uid)} that this user cannot see",
            f"`sudo ss -ltnp 'sport = :{port}'` names it",
        )
    node_dir = next((arg[len(MARKER) :] for arg in holder.argv if arg.startswith(MARKER)), None)
    if node_dir:
        home = Path(node_dir).parent
        return (
            f"{Path(node_dir).name} of the local cluster in {home} (pid {holder.pid})",
            _cli(home, default_home, "down"),
        )
    command = " ".join(holder.argv) or "command line not readable"
    if len(command) > COMMAND_SHOWN:
        command = command[:COMMAND_SHOWN] + "…"
    return f"pid {holder.pid} ({command})", f"`kill {holder.pid}`"


def free_offset(external: list[int], offset: int) -> int:
    """The next multiple of OFFSET_STEP above `offset` whose external ports are all free now."""
    base = [port - offset for port in external]
    candidate = offset - offset % OFFSET_STEP + OFFSET_STEP
    for _ in range(50):
        if not any(busy(port + candidate) for port in base):
            break
        candidate += OFFSET_STEP
    return candidate


def require_free(
    wanted: dict[int, str], external: list[int], offset: int, home: Path, default_home: Path
) -> None:
    """ClusterError naming the first busy port of `wanted` (port -> "kafka-0 EXTERNAL"), its
    holder, and the way out; `external` are the ports LOCALCLUSTER_PORT_OFFSET moves."""
    taken = [port for port in sorted(wanted) if busy(port)]
    if not taken:
        return
    port = taken[0]
    who, stop = explain(port, holders(port), default_home)
    more = f" (so are {', '.join(map(str, taken[1:]))})" if taken[1:] else ""
    if port in external:
        beside = f"run beside it with `LOCALCLUSTER_PORT_OFFSET={free_offset(external, offset)}"
        beside += " make demo`"
    else:
        beside = (
            f"give this cluster new internal ports with {_cli(home, default_home, 'down --wipe')}"
        )
        beside += " (deletes its data)"
    raise ClusterError(
        f"port {port} ({wanted[port]}) is already in use{more}, by {who}:"
        f" stop it ({stop}), or {beside}"
    )
