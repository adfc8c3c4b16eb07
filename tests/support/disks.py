"""Full disks for the Jepsen-class tests. Each node's log dir is a small tmpfs of its own,
mounted before the node first starts. fill() takes all of its free space with one file, so the
broker's next write gets ENOSPC; free() deletes that file. Root only (mount).

A tmpfs, not a loop-mounted filesystem: it needs no image file or loop device, and a full one
fails writes the same way (ENOSPC). Its pages are memory, used only as the broker writes.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

SIZE = "512m"  # far more than a node of the test cluster writes; the filler takes the rest
# Kafka loads only the folders of a log dir, so a file there is not taken for a partition.
FILLER = "nemesis-filler"


def mount(path: Path, size: str = SIZE) -> None:
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755"
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True
    )


def unmount(path: Path) -> None:
    """Unmount if mounted; lazily if something still holds it open."""
    if not os.path.ismount(path):
        return
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(path)], check=True, capture_output=True)


def fill(path: Path) -> int:
    """Take every free byte of the filesystem at ``path``; returns how many were taken."""
    taken = 0
    with (path / FILLER).open("ab") as filler:
        for step in (1 << 20, 4096):  # megabytes, then the last pages
            while True:
                try:
                    os.posix_fallocate(filler.fileno(), taken, step)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
                taken += step
    return taken


def free(path: Path) -> None:
    """Give back what fill() took (idempotent)."""
    (path / FILLER).unlink(missing_ok=True)
