"""The app's producer and consumer loops rewritten with two other Python clients, as peers.

Same work per message as our code (MessageModel encode with a uuid4 key / decode of every
record), same settings (idempotent, acks=all, linger 5 ms, LZ4; no auto-commit, synchronous
commits of "last offset + 1"), same timing rules as bench/ours.py. Bench-only code.
"""

from __future__ import annotations

from message_model import MessageDecodeError, MessageModel, new_message_id


def make_message(n: int) -> tuple[bytes, bytes]:
    """(key, value) of message n, made as producer.py's produce() makes it."""
    message = MessageModel(message_id=new_message_id(), content=f"Test message {n}")
    return message.message_id.encode(), message.serialize()


def decode(value: bytes | None) -> MessageModel | None:
    """Decode one record as app_config.decode_record does (poison records give None)."""
    try:
        if value is None:
            raise MessageDecodeError("tombstone")
        return MessageModel.deserialize(value)
    except MessageDecodeError:
        return None
