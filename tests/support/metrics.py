"""What an app's /metrics page says (kafka_app/metrics), read with prometheus_client's own
parser, and which counter shows each app service doing its work."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# The counter that grows while a replica of the service works.
WORK_COUNTERS = {
    "producer": "kafka_producer_messages_delivered_total",
    "batch-consumer": "kafka_consumer_records_processed_total",
    "single-consumer": "kafka_consumer_records_processed_total",
}


def samples(text: str) -> dict[str, float]:
    """Every sample by its name and labels as Prometheus prints them: the bare name without
    labels, else e.g. ``kafka_client_brokers_up{client_id="producer-1"}``."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def working(replica: str, base_url: str) -> str | None:
    """None once the app replica `replica` (producer-1) at `base_url` is ready, names itself
    on /metrics, and its work counter is above 0; else what is missing."""
    status, said = get(f"{base_url}/readyz")
    if status != 200:
        return f"{replica}: /readyz answers {status} {said.strip()}"
    status, text = get(f"{base_url}/metrics")
    found = samples(text) if status == 200 else {}
    if f'kafka_client_brokers_up{{client_id="{replica}"}}' not in found:
        return f"{replica}: /metrics ({status}) has no kafka_client_brokers_up of its client id"
    counter = WORK_COUNTERS[replica.rpartition("-")[0]]
    if found.get(counter, 0) <= 0:
        return f"{replica}: {counter} is {found.get(counter)}"
    return None
