"""The fault tests' checker finds each anomaly it names, and none in a clean run."""

from __future__ import annotations

from support.checker import check
from support.records import TopicContent

# One partition, offsets 0-5, ids a-f; all acknowledged.
TOPIC = TopicContent({(0, o): k for o, k in enumerate("abcdef")})
ACKED = [(0, o, k) for o, k in enumerate("abcdef")]


def test_a_clean_run_has_no_anomaly() -> None:
    found = check(ACKED, {"c1": ACKED[:3], "c2": ACKED[3:]}, TOPIC)
    assert found.errors() == {} and found.redelivered_total == 0 and not found.unseen


def test_each_anomaly_is_found_and_named() -> None:
    topic = TopicContent({**TOPIC.keys, (0, 6): "a", (0, 7): "x"})  # a twice; x never acked
    acked = [*ACKED, (0, 8, "g")]  # g acknowledged at an offset the topic does not have
    consumer = [(0, 0, "a"), (0, 1, "b"), (0, 3, "d"), (0, 2, "c"), (0, 4, "e"), (0, 5, "f")]
    found = check(acked, {"c1": consumer, "c2": [(0, 1, "b")]}, topic)
    assert found.lost == ["g ([0] @ 8): acknowledged, not in the topic"]
    assert found.duplicate == ["a at [(0, 0), (0, 6)]"]
    assert found.unseen == ["x at [(0, 7)]"]
    assert found.redelivered == {"by another consumer": ["b x2"]}
    assert found.nonmonotonic == ["c1: [0] 3 -> 2"]
    assert found.poll_skip == []  # 1 -> 3 skipped 2, but c1 processed it later


def test_a_skip_over_records_nobody_processed_is_a_poll_skip_and_a_loss() -> None:
    found = check(ACKED, {"c1": [(0, 0, "a"), (0, 1, "b"), (0, 4, "e"), (0, 5, "f")]}, TOPIC)
    assert found.poll_skip == ["c1: [0] 1 -> 4, skipping [2, 3]"]
    assert [line.split()[0] for line in found.lost] == ["c", "d"]


def test_going_back_after_a_rebalance_is_a_redelivery_not_an_anomaly() -> None:
    again = [*ACKED[:4], *ACKED[2:]]
    found = check(ACKED, {"c1": again}, TOPIC, explained={"c1"})
    assert found.errors() == {}
    assert found.redelivered == {"by the same consumer": ["c x2", "d x2"]}
