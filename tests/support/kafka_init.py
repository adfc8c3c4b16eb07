"""kafka-init's command of the compose files, to run against a cluster of this machine.

In the apache/kafka image, kafka-topics.sh runs Kafka's TopicCommand and kafka-acls.sh its
AclCommand; here scripts in their place run the same classes from the jars localcluster
resolved, and the Docker addresses kafka-N:9092 are the given cluster's.
"""

from __future__ import annotations

import os
from pathlib import Path

from compose_live.stack import COMPOSE_FILE, ROOT
from localcluster import compose

SECURE = ROOT / "secure"
# The image's tools kafka-init calls, and the classes they run.
TOOLS = {
    "/opt/kafka/bin/kafka-topics.sh": "org.apache.kafka.tools.TopicCommand",
    "/opt/kafka/bin/kafka-acls.sh": "org.apache.kafka.tools.AclCommand",
}
BROKERS = "kafka-0:9092,kafka-1:9092,kafka-2:9092"


def kafka_init(
    bootstrap: str, lib: Path, folder: Path, *overrides: Path
) -> tuple[list[str], dict[str, str]]:
    """kafka-init's command and environment (of docker-compose.yml with ``overrides`` merged),
    after Compose's `$$` unescaping, aimed at a cluster of this machine through scripts in
    place of the image's tools, with secure/ where the secured override mounts it."""
    service = compose.merged_services([COMPOSE_FILE, *overrides])["kafka-init"]
    places = {}
    for tool, main in TOOLS.items():
        script = folder / Path(tool).name
        script.write_text(f"#!/bin/sh\nexec java -cp '{lib}/*' {main} \"$@\"\n")
        script.chmod(0o755)
        places[tool] = str(script)
    places |= {BROKERS: bootstrap, "kafka-0:9092": bootstrap, "/etc/kafka/secure": str(SECURE)}
    assert service["command"][:2] == ["bash", "-c"], service["command"]
    command = list(service["command"])
    for inside, here in places.items():
        assert inside in command[2], f"{inside} not in kafka-init's command"
        command[2] = command[2].replace(inside, here)
    command[2] = command[2].replace("$$", "$")
    environment = {str(k): str(v) for k, v in service["environment"].items()}
    return command, {**os.environ, **environment}
