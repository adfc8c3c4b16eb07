"""The default Kafka client.id: which replica of which service this is."""

import contextlib
import os
import socket
from pathlib import Path


def default_client_id(service: str, container_marker: Path = Path("/.dockerenv")) -> str:
    """``<service>-<n>`` in replica n of a Compose service, else ``<service>-<hostname>``.

    Compose names replica n ``<project>-<service>-<n>``, a name its network's DNS resolves, and
    docker-compose.yml passes the project's name: the replica whose name resolves to this
    container's address is this one. Only in a container (Docker creates /.dockerenv)."""
    host = socket.gethostname()
    project = os.environ.get("COMPOSE_PROJECT_NAME")
    if project and container_marker.exists():
        with contextlib.suppress(OSError):  # a name that does not resolve ends the search
            me = socket.gethostbyname(host)
            for n in range(1, 100):
                if socket.gethostbyname(f"{project}-{service}-{n}") == me:
                    return f"{service}-{n}"
    return f"{service}-{host}"
