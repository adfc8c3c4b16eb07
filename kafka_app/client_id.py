"""The default Kafka client.id: which replica of which service this is."""

import contextlib
import os
import socket
import time
from pathlib import Path

# Replicas start together, and Docker's DNS knows a container only once it runs: a sibling's
# name that does not resolve yet ends a search before it reaches ours, so it runs again.
SEARCHES, SEARCH_PAUSE_SECONDS = 5, 1.0


def default_client_id(service: str, container_marker: Path = Path("/.dockerenv")) -> str:
    """``<service>-<n>`` in replica n of a Compose service, else ``<service>-<hostname>-<pid>``
    (two scripts started by hand on one machine sign their messages apart). In a container
    (Docker creates /.dockerenv), Compose names replica n ``<project>-<service>-<n>`` in its
    DNS, and docker-compose.yml passes the project: the name that resolves to us is ours."""
    host = socket.gethostname()
    project = os.environ.get("COMPOSE_PROJECT_NAME")
    for search in range(SEARCHES if project and container_marker.exists() else 0):
        if n := replica_number(project, service, host):
            return f"{service}-{n}"
        time.sleep(SEARCH_PAUSE_SECONDS if search + 1 < SEARCHES else 0)
    return f"{service}-{host}-{os.getpid()}"


def replica_number(project: str, service: str, host: str) -> int | None:
    with contextlib.suppress(OSError):  # a name that does not resolve ends the search
        me = socket.gethostbyname(host)
        for n in range(1, 100):
            if socket.gethostbyname(f"{project}-{service}-{n}") == me:
                return n
    return None
