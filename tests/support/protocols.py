"""The consumer group protocols the consumer-side fault tests run under: classic, and KIP-848's
(Kafka 4), whose session is the broker's group.consumer.session.timeout.ms, 45 s too.

A long fault runs under KIP-848 only as an ``extended`` test: CI leaves those to `make chaos`
for time (pyproject.toml's addopts deselects them); the short ones run under both everywhere.
"""

from __future__ import annotations

import pytest

PROTOCOLS = ("classic", "consumer")
LONG_FAULT_PROTOCOLS = ("classic", pytest.param("consumer", marks=pytest.mark.extended))
