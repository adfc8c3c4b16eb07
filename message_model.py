"""The message that travels through Kafka and its wire format (UTF-8 JSON), shared by the
producer and the consumers. msgspec encodes, decodes *and validates* in one pass in C: the
consumer gets a typed object or a clear error, never a half-checked ``dict``. Every way bytes
can fail to be a message raises MessageDecodeError and nothing else, so a consumer can tell
"this record is garbage" (skip it) from "my code is broken" (crash)."""

import os
from typing import Annotated

import msgspec


class MessageDecodeError(ValueError):
    """The bytes are not a valid message; the text says why (the cause is chained)."""


class MessageModel(msgspec.Struct, frozen=True, gc=False):
    """One message: ``MessageModel(message_id, content)``. Frozen: a received message is a
    fact. gc=False: only ``str`` fields, so no cycles for the collector to look for. Decoding
    rejects an empty ``message_id`` (the producer's uuid4); the constructor does not check, to
    stay fast. Unknown fields are ignored, so a newer producer may add fields; removing or
    retyping one of these two is a breaking change."""

    message_id: Annotated[str, msgspec.Meta(min_length=1)]
    content: str

    def serialize(self) -> bytes:
        """Return compact UTF-8 JSON: ``b'{"message_id":"...","content":"..."}'``."""
        return _encoder.encode(self)

    @staticmethod
    def deserialize(data: bytes | bytearray | memoryview | str) -> "MessageModel":
        """Parse and validate one message; raise :class:`MessageDecodeError` on any bad input:
        not bytes-like, empty, invalid UTF-8 (a BOM too), malformed JSON, NaN, nesting too
        deep, not an object, a missing or mistyped field, an empty ``message_id``."""
        try:
            return _decoder.decode(data)
        except msgspec.ValidationError as exc:  # well-formed JSON of the wrong shape
            raise MessageDecodeError(f"invalid message: {exc}") from exc
        except (msgspec.DecodeError, UnicodeError) as exc:  # not parseable at all
            raise MessageDecodeError(f"not valid UTF-8/JSON: {exc}") from exc
        except RecursionError as exc:  # e.g. [[[[...]]]] in an ignored field
            raise MessageDecodeError("not valid JSON: nested too deeply") from exc
        except (TypeError, BufferError) as exc:  # None, int, non-contiguous memoryview...
            raise MessageDecodeError(
                f"expected bytes, bytearray, memoryview or str, got {type(data).__name__}: {exc}"
            ) from exc


# Built once at import: they cache the schema, so no per-call setup is paid.
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(MessageModel)

# uuid4's version nibble is "4"; its variant nibble keeps 2 random bits under "10": 8, 9, a or b.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_message_id() -> str:
    """``str(uuid.uuid4())``, twice as fast: the same 122 random bits from ``os.urandom`` and
    the same text, without the ``UUID`` object, the costliest step of making a message."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
