"""Micro-benchmark of the message codec: ``python bench/bench_codec.py [--quick]``.

Times serialize, deserialize and the round trip of a demo-sized message with ``timeit`` and
prints ns/op (min and median of the repeats; min is the least noisy estimate of the cost, the
median shows what a busy machine gives). For comparison it also times the stdlib equivalent,
``json`` + a dataclass, which on top of being slower validates nothing.
"""

import argparse
import dataclasses
import json
import statistics
import sys
import timeit
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere
from message_model import MessageModel

# Built once, like the msgspec encoder: json.dumps(..., separators=...) would build one per call.
_json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclasses.dataclass(frozen=True)
class StdlibMessage:
    message_id: str
    content: str

    def serialize(self) -> bytes:
        data = {"message_id": self.message_id, "content": self.content}
        return _json_encoder.encode(data).encode()

    @staticmethod
    def deserialize(data: bytes) -> "StdlibMessage":
        obj = json.loads(data)
        return StdlibMessage(obj["message_id"], obj["content"])


def time_ns(func, number: int, repeat: int) -> tuple[float, float]:
    """Return (min, median) nanoseconds per call of ``func``."""
    runs = [t / number * 1e9 for t in timeit.repeat(func, number=number, repeat=repeat)]
    return min(runs), statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few iterations")
    args = parser.parse_args()
    number, repeat = (2_000, 5) if args.quick else (200_000, 7)

    message_id = str(uuid.uuid4())
    cases = []
    for label, cls in (("msgspec", MessageModel), ("json+dataclass", StdlibMessage)):
        message = cls(message_id, "Test message 2886")
        data = message.serialize()
        assert cls.deserialize(data) == message
        cases += [
            (label, "serialize", message.serialize),
            (label, "deserialize", lambda cls=cls, data=data: cls.deserialize(data)),
            (label, "round trip", lambda cls=cls, m=message: cls.deserialize(m.serialize())),
        ]

    print(f"{len(data)}-byte message, {number:,} calls x {repeat} repeats")
    print(f"{'codec':<16}{'operation':<13}{'min ns/op':>10}{'median ns/op':>14}")
    for label, operation, func in cases:
        best, median = time_ns(func, number, repeat)
        print(f"{label:<16}{operation:<13}{best:>10.0f}{median:>14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
