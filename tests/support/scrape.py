"""Reading an app's metrics and probes (``--metrics-port 0``) as Prometheus and Kubernetes would:
over HTTP, the exposition text parsed by prometheus-client's own parser."""

from __future__ import annotations

import re
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from .kafka_tools import java_tool
from .metrics import get
from .processes import App
from .waits import wait_until

# Where an app started with these flags serves: loopback, a port of the kernel's choosing.
METRICS_FLAGS = ("--metrics-port", 0, "--metrics-address", "127.0.0.1")
_SERVING = re.compile(r"Metrics and probes on http://127\.0\.0\.1:(\d+)/metrics")
GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, labels) -> value


def metrics_port(app: App, timeout: float = 30) -> int:
    """The port the app says it serves on (its first log lines)."""
    found: list[int] = []

    def said() -> bool:
        if match := _SERVING.search(app.log()):
            found.append(int(match.group(1)))
        return bool(found)

    wait_until(said, timeout, f"{app.name} to say where it serves metrics", alive=[app])
    return found[0]


def probe(port: int, path: str, timeout: float = 5) -> tuple[int, str]:
    """(HTTP status, body) of GET ``path``; status 0 if nothing answers."""
    return get(f"http://127.0.0.1:{port}{path}", timeout)


def scrape(port: int) -> Samples:
    """Every sample of /metrics, keyed by name and sorted labels."""
    status, text = probe(port, "/metrics")
    assert status == 200, f"/metrics answered {status}: {text}"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def gauge_lag(samples: Samples, topic: str) -> dict[int, int]:
    """The consumer's kafka_consumer_lag per partition of ``topic``."""
    return {
        int(dict(labels)["partition"]): int(v)
        for (name, labels), v in samples.items()
        if name == "kafka_consumer_lag" and dict(labels)["topic"] == topic
    }


def group_command_lag(
    bootstrap: str, group: str, topic: str, timeout: float = 60
) -> dict[int, int]:
    """LAG per partition of ``topic``, as Kafka's own kafka-consumer-groups.sh --describe shows
    it (ConsumerGroupCommand, run from the cluster's jars); partitions showing "-" are left out."""
    args = ["--bootstrap-server", bootstrap, "--describe", "--group", group]
    run = subprocess.run(
        java_tool(GROUP_COMMAND, *args, brief=True),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, f"ConsumerGroupCommand failed: {run.stdout}{run.stderr}"
    lags = {}
    for line in run.stdout.splitlines():
        fields = line.split()
        # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
        if len(fields) >= 6 and fields[0] == group and fields[1] == topic and fields[5] != "-":
            lags[int(fields[2])] = int(fields[5])
    return lags
