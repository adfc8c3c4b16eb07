"""Who listens on a loopback port: the LISTEN socket in /proc/net/tcp and tcp6, and the process
whose /proc/<pid>/fd links to that socket's inode (Linux; elsewhere nobody is named)."""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"  # the state column of a listening socket in /proc/net/tcp


@dataclass(frozen=True)
class Holder:
    """A listening socket on the port; pid and argv are unknown when this user cannot see them."""

    uid: int
    pid: int | None = None
    argv: tuple[str, ...] = ()


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net/tcp writes an address as 32-bit words, each in the host's byte order."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw)


def _reaches_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a socket bound there takes connections to 127.0.0.1 or ::1 (the wildcard does)."""
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    return address.is_loopback or address.is_unspecified


def _listening_inodes(port: int, proc: Path) -> dict[int, int]:
    """inode -> uid of every LISTEN socket on the port that loopback clients reach."""
    found: dict[int, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            rows = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, uid, inode = fields[1], fields[3], fields[7], fields[9]
            hex_address, _, hex_port = local.rpartition(":")
            ours = state == LISTEN and int(hex_port, 16) == port
            if ours and _reaches_loopback(_address(hex_address)):
                found[int(inode)] = int(uid)
    return found


def _argv(proc: Path, pid: int) -> tuple[str, ...]:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0")[:-1])


def _owner(inode: int, proc: Path) -> int | None:
    """The pid with an fd on the socket; None if no process this user may look into has one."""
    link = f"socket:[{inode}]"
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(Path(entry.path) / "fd")
        except OSError:  # another user's process, or gone
            continue
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) == link:
                        return int(entry.name)
                except OSError:
                    continue
    return None


def listened_on(port: int, proc: Path = PROC) -> bool:
    """Whether a loopback client of the port would reach a listening socket (without the
    search for its process)."""
    return bool(_listening_inodes(port, proc))


def holders(port: int, proc: Path = PROC) -> list[Holder]:
    """The listening sockets on the port that a loopback client would reach, with their process
    where visible. Empty when /proc has none (another OS, or a socket that is not listening)."""
    found = []
    for inode, uid in _listening_inodes(port, proc).items():
        pid = _owner(inode, proc)
        found.append(Holder(uid, pid, _argv(proc, pid) if pid is not None else ()))
    return found
