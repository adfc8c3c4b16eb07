"""The producer's hot-path shortcuts keep their promises (no cluster needed)."""

from __future__ import annotations

import uuid

import pytest

import producer
from kafka_app import settings
from kafka_app.client_health import ClientHealth
from kafka_app.lifecycle import RecordLog
from kafka_app.settings import connection
from message_model import MessageModel, new_message_id


def test_new_message_id_is_a_canonical_uuid4() -> None:
    seen_variants = set()
    for _ in range(5_000):
        text = new_message_id()
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case hex, dashes at 8-4-4-4-12
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        seen_variants.add(text[19])
    assert seen_variants == set("89ab")  # the variant nibble keeps its 2 random bits


def test_new_message_id_does_not_repeat() -> None:
    ids = {new_message_id() for _ in range(100_000)}
    assert len(ids) == 100_000


def test_new_message_id_round_trips_through_the_codec() -> None:
    message = MessageModel(new_message_id(), "Test message 1")
    assert MessageModel.deserialize(message.serialize()) == message


@pytest.mark.parametrize(
    ("interval", "linger_ms"), [("0", 5), ("0.001", 5), ("0.005", 0), ("1.5", 0)]
)
def test_linger_only_when_there_is_something_to_batch(interval: str, linger_ms: int) -> None:
    args = producer.parse_args(["--bootstrap-servers", "localhost:1", "--interval", interval])
    config = config_of(args)
    assert config["linger.ms"] == linger_ms
    assert config["enable.idempotence"] is True


def test_a_properties_file_still_sets_linger(tmp_path) -> None:
    properties = tmp_path / "client.properties"
    properties.write_text("linger.ms=20\n")
    args = producer.parse_args(
        ["--bootstrap-servers", "localhost:1", "--client-properties", str(properties)]
    )
    assert config_of(args)["linger.ms"] == "20"


def config_of(args) -> dict:
    """The producer config producer.main() builds from these flags."""
    bootstrap, properties = connection(args.bootstrap_servers, args.client_properties)
    tracker = producer.DeliveryTracker(True, RecordLog(None))
    extra = {"client.id": "producer", **ClientHealth().callbacks(), "on_delivery": tracker}
    return settings.producer_config(bootstrap, properties, args.interval, extra)


class FakeMessage:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        self.calls.append("partition")
        return 1

    def offset(self) -> int:
        self.calls.append("offset")
        return 7

    def key(self) -> bytes:
        self.calls.append("key")
        return b"id-1"


def test_delivery_callback_without_a_log_reads_nothing(tmp_path) -> None:
    quiet = producer.DeliveryTracker(True, RecordLog(None))
    message = FakeMessage()
    quiet(None, message)
    assert quiet.delivered == 1
    assert message.calls == []

    path = tmp_path / "delivered.log"
    log = RecordLog(str(path))
    logged = producer.DeliveryTracker(True, log)
    logged(None, FakeMessage())
    log.close()
    assert path.read_text() == "1 7 id-1\n"
