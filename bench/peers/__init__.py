"""The app's producer and consumer loops rewritten with two other Python clients, as peers.

Same work per message as our code (MessageModel encode with a uuid4 key, ``deserialize`` of
every record), same settings (idempotent, acks=all, linger 5 ms, LZ4; no auto-commit, synchronous
commits of "last offset + 1"), same timing rules as bench/ours.py. Bench-only code.
"""

from __future__ import annotations

from typing import Any

from bench.common import Stopwatch
from message_model import MessageModel, new_message_id


def make_message(n: int) -> tuple[bytes, bytes]:
    """(key, value) of message n, made as producer.py's produce() makes it."""
    message = MessageModel(message_id=new_message_id(), content=f"Test message {n} from bench")
    return message.message_id.encode(), message.serialize()


def first_assignment_listener(base: type, watch: Stopwatch) -> Any:
    """A rebalance listener of the client's own base class (both clients check the type) that
    starts the stopwatch at the first non-empty assignment."""

    class Listener(base):
        def on_partitions_assigned(self, assigned) -> None:
            if assigned:
                watch.mark_start()

        def on_partitions_revoked(self, revoked) -> None:
            pass

    return Listener()
