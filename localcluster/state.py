"""cluster.json, what a cluster home remembers across runs: its cluster id, the loopback port of
every listener, and the port offset `up` ran with, so that later commands without
LOCALCLUSTER_PORT_OFFSET find the cluster where `up` put it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localcluster.errors import ClusterError

OFFSET_VARIABLE = "LOCALCLUSTER_PORT_OFFSET"


def state_file(home: Path) -> Path:
    return home / "cluster.json"


def read(home: Path) -> dict:
    try:
        return json.loads(state_file(home).read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise ClusterError(
            f"{state_file(home)} is not valid JSON: run `python -m localcluster down --wipe`"
        ) from None


def write(home: Path, state: dict) -> None:
    home.mkdir(parents=True, exist_ok=True)
    state_file(home).write_text(json.dumps(state, indent=2))


@dataclass(frozen=True)
class Offset:
    value: int
    source: str  # where it comes from, for the user: the variable, the state file, the default


def choose_offset(home: Path, state: dict, running: Callable[[], bool]) -> Offset:
    """LOCALCLUSTER_PORT_OFFSET if set, else the one remembered, else 0. A variable that differs
    from the offset of the cluster running in `home` is refused: the command would talk to
    other ports than that cluster's, as if it were down."""
    remembered = state.get("port_offset")
    raw = os.environ.get(OFFSET_VARIABLE, "").strip()
    if not raw:
        if remembered is None:
            return Offset(0, "the default")
        return Offset(remembered, f"remembered in {state_file(home)}")
    try:
        offset = int(raw)
    except ValueError:
        raise ClusterError(f"{OFFSET_VARIABLE} must be a whole number, not {raw!r}") from None
    if remembered is not None and offset != remembered and running():
        raise ClusterError(
            f"{OFFSET_VARIABLE}={offset}, but the cluster in {home} runs with port offset"
            f" {remembered} (remembered in {state_file(home)}): unset the variable to use that"
            " cluster, or stop it first with `python -m localcluster down`"
        )
    return Offset(offset, f"from {OFFSET_VARIABLE}")
