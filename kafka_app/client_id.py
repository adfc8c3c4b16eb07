"""The default Kafka client.id: which replica of which service this is."""

import contextlib
import os
import socket
from pathlib import Path


def default_client_id(service: str, container_marker: Path = Path("/.dockerenv")) -> str:
    """``<service>-<n>`` in replica n of a Compose service, else ``<service>-<hostname>-<pid>``
    (two scripts started by hand on one machine sign their messages apart). In a container
    (Docker creates /.dockerenv), Compose names replica n ``<project>-<service>-<n>`` in its
    DNS, and docker-compose.yml passes the project: the name that resolves to us is ours."""
    host = socket.gethostname()
    project = os.environ.get("COMPOSE_PROJECT_NAME")
    if project and container_marker.exists() and (n := replica_number(project, service, host)):
        return f"{service}-{n}"
    return f"{service}-{host}-{os.getpid()}"


def replica_number(project: str, service: str, host: str) -> int | None:
    with contextlib.suppress(OSError):  # a name that does not resolve ends the search
        me = socket.gethostbyname(host)
        for n in range(1, 100):
            if socket.gethostbyname(f"{project}-{service}-{n}") == me:
                return n
    return None
