"""kafka-init's command of docker-compose.yml, run as Docker runs it, against a real cluster.

In the apache/kafka image, kafka-topics.sh runs Kafka's TopicCommand; here a script in its
place runs the same class from the jars localcluster resolved, and the Docker addresses
kafka-N:9092 are the session cluster's. The topic names are new ones, so that the command
really creates both topics; a second run is kafka-init starting again on existing topics.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest

from localcluster import admin
from support.kafka_init import kafka_init

pytestmark = pytest.mark.cluster


def test_kafka_init_creates_both_topics_with_the_retention_and_runs_again(kafka_cluster, tmp_path):
    command, env = kafka_init(kafka_cluster.bootstrap, kafka_cluster.local.lib(), tmp_path)
    topic = f"test-kafka-init-{uuid.uuid4().hex[:8]}"
    dead_letters = f"{topic}.dlq"
    retention = env["DLQ_TOPIC_CONFIG"].removeprefix("retention.ms=")
    assert retention == "2592000000", env["DLQ_TOPIC_CONFIG"]
    env.update(TOPIC_NAME=topic, DLQ_TOPIC_NAME=dead_letters)

    for run in ("first", "again"):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{run}: {result.stdout}{result.stderr}"
        assert "granted" not in result.stdout  # no ACLs without the secured override's file
        described = {  # in no fixed order
            line.split("\t")[0].removeprefix("Topic: "): line
            for line in result.stdout.splitlines()
            if line.startswith("Topic: ")
        }
        assert sorted(described) == [topic, dead_letters], result.stdout
        shape = "\tPartitionCount: 3\tReplicationFactor: 2\t"
        assert all(shape in line for line in described.values()), described
        assert f"retention.ms={retention}" in described[dead_letters], described

    for name in (topic, dead_letters):
        kafka_cluster.wait_full_isr(name, timeout=30)
    assert admin.topic_config(kafka_cluster.admin, dead_letters)["retention.ms"] == retention
    # Control: the main topic has the broker's default, so the value above is the topic's own.
    assert admin.topic_config(kafka_cluster.admin, topic)["retention.ms"] == "604800000"
