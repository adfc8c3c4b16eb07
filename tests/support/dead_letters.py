"""The dead-letter writer the in-process loops need: the app's own, to ``<topic>.dlq``."""

from __future__ import annotations

from kafka_app.client_health import ClientHealth
from kafka_app.dead_letters import DeadLetters, dead_letter_producer_config


def dead_letters_for(bootstrap: str, topic: str, group: str, dlq: str | None = None) -> DeadLetters:
    """As the consumers make theirs; its librdkafka lines go through logging, as theirs do."""
    config = dead_letter_producer_config(bootstrap, None, ClientHealth().callbacks())
    return DeadLetters(dlq or f"{topic}.dlq", group, config)
