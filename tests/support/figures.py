"""The figures each fault scenario reports, the longest gap between events, and where they go.

:class:`Figures` is the one line of numbers each scenario reports; :func:`save_figures` writes
them all to build/fault-figures.json with a note of the machine they ran on.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIGURES_FILE = ROOT / "build" / "fault-figures.json"


def longest_gap(times: Iterable[float], start: float | None = None, end: float | None = None):
    """The longest time without an event, counting from `start` and up to `end` if given.

    Returns (seconds, from, to).
    """
    stamps = sorted(times)
    if start is not None:
        stamps = [start, *(t for t in stamps if t >= start)]
    if end is not None:
        stamps = [*(t for t in stamps if t <= end), end]
    best = (0.0, 0.0, 0.0)
    for a, b in itertools.pairwise(stamps):
        if b - a > best[0]:
            best = (b - a, a, b)
    return best


@dataclass
class Figures:
    """The numbers one scenario reports; None where a figure does not apply."""

    scenario: str
    test: str = ""
    sent: int | None = None
    acked: int | None = None
    in_topic: int | None = None
    processed: int | None = None
    lost: int | None = None
    duplicates: int | None = None
    longest_stall_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    passed: bool | None = None

    def line(self) -> str:
        def show(value: Any) -> str:
            if value is None:
                return "-"
            return f"{value:.1f}" if isinstance(value, float) else str(value)

        main = " ".join(
            f"{name}={show(getattr(self, name))}"
            for name in (
                "sent",
                "acked",
                "in_topic",
                "processed",
                "lost",
                "duplicates",
                "longest_stall_s",
            )
        )
        extra = " ".join(f"{k}={show(v)}" for k, v in self.extra.items())
        return f"FIGURES {self.scenario}: {main}" + (f" | {extra}" if extra else "")


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def save_figures(figures: list[Figures], started: str) -> None:
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "started": started,
        "machine": machine(),
        "scenarios": [{**asdict(f), "line": f.line()} for f in figures],
    }
    FIGURES_FILE.write_text(json.dumps(document, indent=2) + "\n")
