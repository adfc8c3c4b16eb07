"""Bad input: a corpus of broken records is written between good ones; both consumers
process every good record, log every bad one with its partition and offset, commit past it,
and neither crashes nor stalls.

What counts as good is the codec's contract (message_model.py): a JSON object with a non-empty
string ``message_id`` and a string ``content``. Unknown extra fields are accepted
(forward-compatible), and size is not a criterion: a 900 KB message is valid and is processed;
the broker's limit (max.message.bytes, ~1 MB by default) is what bounds it. Keys and headers
are not part of the message, so garbage there does not make a record bad.

The corpus is written, byte for byte, by an idempotent confluent-kafka producer in the test;
Kafka's own Java console consumer (support/witness.py) then says the topic holds exactly it.

The fuzzing of the codec itself (hypothesis, 2 x 10,000 examples, only MessageDecodeError
may escape) is in tests/test_message_model.py.
"""

from __future__ import annotations

import gzip
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

from localcluster.admin import committed_offsets, end_offsets
from message_model import MessageModel
from support.figures import Figures, longest_gap
from support.processes import Apps
from support.produce import produce_raw
from support.records import read_records
from support.tail import Tail
from support.witness import witness_read

BIG_CONTENT = 900_000  # characters; the record is ~900 KB, under the ~1 MB default limit


@dataclass
class Case:
    name: str
    value: bytes | None
    good: bool
    key: bytes | None = None  # default: b"case-<name>"
    headers: list[bytes] = field(default_factory=list)
    message_id: str = ""  # for good records

    def __post_init__(self) -> None:
        if self.key is None and self.name != "null-key":
            self.key = f"case-{self.name}".encode()


def good(name: str, content: str | None = None, **fields: object) -> Case:
    message_id = f"{name}-{uuid.uuid4()}"
    text = f"good record {name}" if content is None else content
    body = {"message_id": message_id, "content": text, **fields}
    return Case(name, json.dumps(body, ensure_ascii=False).encode(), True, message_id=message_id)


def valid_bytes() -> bytes:
    return MessageModel(str(uuid.uuid4()), "looks fine").serialize()


def bad_corpus() -> list[Case]:
    nested = b"[" * 100_000 + b"]" * 100_000
    return [
        Case("not-utf8", b"\xff\xfe\xfa not text at all", False),
        Case("not-utf8-in-string", b'{"message_id":"\xff\xfe","content":"x"}', False),
        Case("utf8-surrogate", b'{"message_id":"\xed\xa0\x80","content":"x"}', False),
        Case("bom", b"\xef\xbb\xbf" + valid_bytes(), False),
        Case("truncated-json", valid_bytes()[:-7], False),
        Case("trailing-garbage", valid_bytes() + b"}", False),
        Case("json-array", b'["an-id", "a content"]', False),
        Case("json-number", b"42", False),
        Case("json-string", b'"a string"', False),
        Case("json-null", b"null", False),
        Case("json-true", b"true", False),
        Case("empty-object", b"{}", False),
        Case("missing-content", b'{"message_id":"abc"}', False),
        Case("missing-message-id", b'{"content":"abc"}', False),
        Case("id-wrong-type", b'{"message_id":123,"content":"x"}', False),
        Case("content-wrong-type", b'{"message_id":"a","content":{"text":"x"}}', False),
        Case("content-null", b'{"message_id":"a","content":null}', False),
        Case("empty-message-id", b'{"message_id":"","content":"x"}', False),
        Case("empty-value", b"", False),
        Case("tombstone", None, False),
        Case("deep-nesting", b'{"message_id":"a","content":"b","x":' + nested + b"}", False),
        Case("nan", b'{"message_id":"a","content":"b","x":NaN}', False),
        Case("infinity", b'{"message_id":"a","content":"b","x":-Infinity}', False),
        Case("huge-integer-id", b'{"message_id":' + b"9" * 10_000 + b',"content":"x"}', False),
        Case("raw-control-char", b'{"message_id":"a","content":"\x01"}', False),
        Case("single-quotes", b"{'message_id':'a','content':'b'}", False),
        Case("whitespace-only", b" \n\t ", False),
        Case("xml", b"<message id='1'>x</message>", False),
        Case("gzip-of-a-valid-message", gzip.compress(valid_bytes()), False),
        Case("nul-bytes", b"\x00" * 16, False),
        Case(
            "bad-with-garbage-key-and-headers",
            b"\x80\x81",
            False,
            key=b"\xff\xfe\x80key",
            headers=[b"x-trace=\xff\xfe\x80", b"no-value", b"dup=1", b"dup=2"],
        ),
    ]


def odd_but_good_corpus() -> list[Case]:
    garbage_key = good("garbage-key")
    garbage_key.key = b"\xff\xfe\x80\x01 key"
    garbage_headers = good("garbage-headers")
    garbage_headers.headers = [b"x-trace=\xff\xfe\x80", b"no-value", b"dup=1", b"dup=2"]
    swapped = good("fields-swapped-and-escaped")
    body = json.loads(swapped.value)
    swapped.value = json.dumps({"content": "caf\u00e9", "message_id": body["message_id"]}).encode()
    spaced = good("whitespace-around")
    spaced.value = b" \n\t" + spaced.value + b"\n "
    null_key = good("null-key")
    null_key.key = None
    return [
        good("extra-fields", v=2, trace={"a": [1, 2.5, None]}, tags=["x"]),
        good("big-900kb", "x" * BIG_CONTENT),
        good("unicode", 'h\u00e9llo \U0001f389 \u202ertl\u202c \u0000 \\ " end'),
        good("empty-content", ""),
        garbage_key,
        garbage_headers,
        swapped,
        spaced,
        null_key,
    ]


def corpus() -> list[tuple[int, Case]]:
    """(partition, case): bad and odd records between plain good ones, round robin over the
    partitions, and a bad record last in every partition (it must be committed past, too)."""
    specials = bad_corpus() + odd_but_good_corpus()
    records: list[Case] = []
    for n, case in enumerate(specials):
        records += [good(f"plain-{n}"), case]
    placed = [(i % 3, case) for i, case in enumerate(records)]
    placed += [(0, Case("last-json-null", b"null", False))]
    placed += [(1, Case("last-tombstone", None, False))]
    placed += [(2, Case("last-not-utf8", b"\xc3\x28", False))]
    return placed


@pytest.mark.faults
@pytest.mark.timeout(240)
def test_bad_records_are_logged_skipped_and_committed_past(
    kafka_cluster, fresh_topic: str, apps: Apps, tail: Tail, figures, tmp_path: Path
) -> None:
    topic = fresh_topic
    kafka_cluster.create_topic(f"{topic}.dlq")  # where the consumers write the bad ones
    bootstrap = kafka_cluster.bootstrap
    placed = corpus()
    produce_raw(bootstrap, topic, [(p, c.key, c.value, c.headers) for p, c in placed])

    # The witness: the topic holds exactly the corpus, in order (value and key lengths, and
    # byte for byte).
    expected: dict[tuple[int, int], Case] = {}
    for partition in range(3):
        for offset, case in enumerate(c for p, c in placed if p == partition):
            expected[(partition, offset)] = case
    witnessed = {(p, o): (key, value) for p, o, key, value in witness_read(bootstrap, topic)}
    seen = {
        pos: (-1 if value is None else len(value), -1 if key is None else len(key))
        for pos, (key, value) in witnessed.items()
    }
    assert seen == {
        pos: (-1 if c.value is None else len(c.value), -1 if c.key is None else len(c.key))
        for pos, c in expected.items()
    }, "the topic does not hold exactly the corpus"
    assert witnessed == {pos: (c.key, c.value) for pos, c in expected.items()}, "not byte for byte"
    config = kafka_cluster.admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    max_bytes = int(next(iter(config.values())).result(timeout=15)["max.message.bytes"].value)
    biggest = max(len(c.value or b"") for c in expected.values())
    assert biggest < max_bytes, f"the {biggest} B record cannot fit {max_bytes}"

    groups = {kind: f"{kind}-bad-input-{uuid.uuid4().hex[:8]}" for kind in ("batch", "single")}
    started = time.monotonic()
    consumers = {
        "batch": apps.batch_consumer("batch", topic, groups["batch"]),
        "single": apps.single_consumer("single", topic, groups["single"]),
    }
    processed = {k: tail.follow(tmp_path / f"{k}.processed") for k in consumers}

    def finished() -> bool:
        for consumer in consumers.values():
            consumer.require_alive()
        return all(p.count >= len(expected) for p in processed.values())

    deadline = time.monotonic() + 90
    while not finished() and time.monotonic() < deadline:
        time.sleep(0.1)
    codes = {k: c.stop(60) for k, c in consumers.items()}
    tail.stop()

    bad = {pos for pos, c in expected.items() if not c.good}
    outcome = {}
    ends = end_offsets(kafka_cluster.admin, topic, [0, 1, 2], timeout=15)
    # An empty partition has nothing to commit (committed_offsets omits it too).
    ends = {p: end for p, end in ends.items() if end > 0}
    for kind, consumer in consumers.items():
        log = consumer.log()
        records = read_records(tmp_path / f"{kind}.processed")
        by_pos: dict[tuple[int, int], list[str]] = {}
        for p, o, message_id in records:
            by_pos.setdefault((p, o), []).append(message_id)
        wrong = {
            pos: by_pos.get(pos)
            for pos, case in expected.items()
            if by_pos.get(pos) != [case.message_id if case.good else "-"]
        }
        unlogged = [
            (pos, expected[pos].name)
            for pos in sorted(bad)
            if not re.search(
                rf"^(WARNING|ERROR):.*{re.escape(topic)} \[{pos[0]}\] @ {pos[1]}\b", log, re.M
            )
        ]
        contents = re.findall(r"^INFO:root:(?:Batch|Single)Consumer received: ", log, re.M)
        committed = committed_offsets(kafka_cluster.bootstrap, groups[kind], topic, timeout=15)
        outcome[kind] = {
            "wrong": wrong,
            "unlogged": unlogged,
            "received": len(contents),
            "duplicates": len(records) - len(by_pos),
            "stall": longest_gap(processed[kind].times(), started)[0],
            "committed": committed,
            "traceback": "Traceback" in log,
            "big_logged": any(len(line) > BIG_CONTENT for line in log.splitlines()),
        }
    goods = sum(c.good for c in expected.values())
    figures.record(
        Figures(
            "bad-input",
            sent=len(placed),
            acked=len(placed),
            in_topic=len(seen),
            processed=sum(len(expected) - len(o["wrong"]) for o in outcome.values()),
            lost=sum(len(o["wrong"]) for o in outcome.values()),
            duplicates=sum(o["duplicates"] for o in outcome.values()),
            longest_stall_s=max(o["stall"] for o in outcome.values()),
            extra={
                "bad_kinds": len(bad_corpus()),
                "odd_good_kinds": len(odd_but_good_corpus()),
                "bad_records": len(bad),
                "good_records": goods,
                "biggest_record_B": biggest,
                "max_message_bytes": max_bytes,
                "exit_codes": "/".join(str(c) for c in codes.values()),
            },
        )
    )

    for kind, o in outcome.items():
        assert codes[kind] == 0, f"{kind} exited with {codes[kind]}:\n{consumers[kind].tail()}"
        assert not o["traceback"], f"{kind}: a traceback in the log"
        assert not o["wrong"], f"{kind}: records not processed as expected: {o['wrong']}"
        assert not o["unlogged"], f"{kind}: bad records logged without coordinates: {o['unlogged']}"
        assert o["received"] == goods, f"{kind}: {o['received']} received lines, {goods} good"
        assert o["big_logged"], f"{kind}: the 900 KB message was not processed"
        assert o["committed"] == ends, f"{kind}: committed {o['committed']}, ends {ends}"
        assert o["stall"] <= 15, f"{kind}: nothing processed for {o['stall']:.1f} s"
