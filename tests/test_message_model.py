"""Unit tests of the message codec (no Kafka needed)."""

import json
import math
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from message_model import MessageDecodeError, MessageModel

VALID = b'{"message_id":"abc","content":"Test message 2886"}'

# Text as Python sees it: any code point except lone surrogates (UTF-8 cannot encode those),
# so quotes, backslashes, control characters and non-BMP characters are all drawn.
any_text = st.text(st.characters(codec="utf-8"))
ids = st.uuids(version=4).map(str) | st.text(st.characters(codec="utf-8"), min_size=1)


@given(message_id=ids, content=any_text)
def test_round_trip(message_id, content):
    message = MessageModel(message_id, content)
    decoded = MessageModel.deserialize(message.serialize())
    assert decoded == message
    assert (decoded.message_id, decoded.content) == (message_id, content)


@given(message_id=ids, content=any_text)
def test_serialize_is_utf8_json_with_exactly_two_fields(message_id, content):
    data = MessageModel(message_id=message_id, content=content).serialize()
    assert isinstance(data, bytes)
    assert json.loads(data.decode("utf-8")) == {"message_id": message_id, "content": content}


def test_serialize_exact_bytes():
    assert MessageModel("abc", "Test message 2886").serialize() == VALID
    escaped = '{"message_id":"i","content":"é\\"\\n\\u0001"}'.encode()  # UTF-8 kept, not \\u00e9
    assert MessageModel("i", 'é"\n\x01').serialize() == escaped


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, bytes.decode])
def test_accepts_bytes_like_and_str(wrap):
    assert MessageModel.deserialize(wrap(VALID)) == MessageModel("abc", "Test message 2886")


def test_extra_fields_are_ignored():
    data = b'{"version":2,"message_id":"abc","trace":{"a":[1,2.5,null]},"content":"x"}'
    assert MessageModel.deserialize(data) == MessageModel("abc", "x")


def test_message_is_frozen():
    with pytest.raises(AttributeError):
        MessageModel("abc", "x").content = "y"  # type: ignore[misc]


def _nested(depth: int) -> bytes:
    return b'{"message_id":"a","content":"b","x":' + b"[" * depth + b"]" * depth + b"}"


BAD_INPUTS = {
    "none": (None, "got NoneType"),
    "int": (123, "got int"),
    "list": ([1, 2], "got list"),
    "object": (object(), "got object"),
    "non-contiguous memoryview": (memoryview(VALID)[::2], "got memoryview"),
    "empty": (b"", "truncated"),
    "not utf-8": (b'{"message_id":"\xff","content":"b"}', "can't decode byte 0xff"),
    "utf-8 encoded surrogate": (b'{"message_id":"\xed\xa0\x80","content":"b"}', "utf-8"),
    "str with lone surrogate": ('{"message_id":"\ud800","content":"b"}', "surrogates"),
    "utf-8 bom": (b"\xef\xbb\xbf" + VALID, "malformed"),
    "not json": (b"hello", "malformed"),
    "truncated json": (VALID[:-1], "truncated"),
    "trailing garbage": (VALID + b"x", "trailing characters"),
    "raw control char": (b'{"message_id":"a","content":"\x01"}', "malformed"),
    "json array": (b'["abc","x"]', "Expected `object`, got `array`"),
    "json number": (b"42", "Expected `object`, got `int`"),
    "json string": (b'"abc"', "Expected `object`, got `str`"),
    "json null": (b"null", "Expected `object`, got `null`"),
    "missing content": (b'{"message_id":"abc"}', "missing required field `content`"),
    "missing message_id": (b'{"content":"x"}', "missing required field `message_id`"),
    "id of wrong type": (
        b'{"message_id":1,"content":"x"}',
        "Expected `str`, got `int` - at `$.message_id`",
    ),
    "content of wrong type": (
        b'{"message_id":"a","content":null}',
        "Expected `str`, got `null` - at `$.content`",
    ),
    "empty message_id": (b'{"message_id":"","content":"x"}', "length >= 1 - at `$.message_id`"),
    "NaN": (b'{"message_id":"a","content":"b","x":NaN}', "malformed"),
    "Infinity": (b'{"message_id":"a","content":"b","x":-Infinity}', "malformed"),
    "huge integer": (b'{"message_id":' + b"9" * 10_000 + b',"content":"x"}', "`$.message_id`"),
    "huge integer at top level": (b"9" * 10_000, "Number out of range"),
    "deeply nested": (_nested(100_000), "nested too deeply"),
}


@pytest.mark.parametrize(("data", "fragment"), list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_raises_message_decode_error(data, fragment):
    with pytest.raises(MessageDecodeError) as info:
        MessageModel.deserialize(data)
    assert issubclass(MessageDecodeError, ValueError)
    assert type(info.value) is MessageDecodeError
    assert fragment in str(info.value)
    assert info.value.__cause__ is not None  # the original error is kept for debugging


# --- fuzzing: whatever the input, only MessageDecodeError may escape ------------------------

short_text = st.text(st.characters(codec="utf-8"), max_size=10)  # keeps 10k examples fast
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | short_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(short_text, children, max_size=4)
    ),
    max_leaves=5,
)
# Objects that are often (not always) valid messages, so successful decodes get checked too.
message_like = st.fixed_dictionaries(
    {},
    optional={"message_id": ids | json_values, "content": any_text | json_values, "v": json_values},
)


@st.composite
def mutated_payloads(draw):
    """A valid payload with a random slice replaced by random bytes."""
    data = MessageModel(draw(ids), draw(any_text)).serialize()
    start = draw(st.integers(0, len(data)))
    end = draw(st.integers(start, len(data)))
    return data[:start] + draw(st.binary(max_size=8)) + data[end:]


def _is_valid_message(value) -> bool:
    if not (
        isinstance(value, dict)
        and isinstance(value.get("message_id"), str)
        and value["message_id"] != ""
        and isinstance(value.get("content"), str)
    ):
        return False
    try:
        json.dumps(value, allow_nan=False)  # NaN/Infinity anywhere make the JSON invalid
    except ValueError:
        return False
    return True


@settings(max_examples=10_000, deadline=None)
@given(st.binary() | mutated_payloads())
def test_fuzz_bytes_only_message_decode_error(data):
    try:
        message = MessageModel.deserialize(data)
    except MessageDecodeError:
        return
    parsed = json.loads(data.decode("utf-8"))  # success only for a valid message
    assert message == MessageModel(parsed["message_id"], parsed["content"])


@settings(max_examples=10_000, deadline=None)
@given(json_values | message_like)
def test_fuzz_json_values_decode_iff_valid(value):
    data = json.dumps(value).encode()
    try:
        message = MessageModel.deserialize(data)
    except MessageDecodeError:
        assert not _is_valid_message(value), data
        return
    assert _is_valid_message(value), data
    assert (message.message_id, message.content) == (value["message_id"], value["content"])


def test_oracle_sanity():
    """The fuzz oracle itself must be able to say no (or the test above proves nothing)."""
    assert _is_valid_message({"message_id": "a", "content": "", "x": [1]})
    assert not _is_valid_message({"message_id": "a", "content": "b", "x": math.nan})
    assert not _is_valid_message({"message_id": "", "content": "b"})
    assert not _is_valid_message({"message_id": "a", "content": 1})
    assert not _is_valid_message(["a", "b"])
    assert _is_valid_message({"message_id": str(uuid.uuid4()), "content": "Test message 2886"})
