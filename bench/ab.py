"""A/B of our code paths: an earlier commit's against the working tree's, alternating.

``python -m bench.ab REF [--rounds 6]``

make bench compares our loops with Kafka's own tools within a round, but between two runs the
tools' own figures move by up to 30% on a 2-core machine, and the ratios with them. A code
change is judged better here: the same bench.ours workers of REF (a temporary git worktree)
and of this checkout run on one cluster and one topic, in alternating order, round after
round, and each case's medians are compared. The first --warmup rounds are not counted: the
brokers' JIT and page cache warm up over them (rates rose 2-3x over the first three rounds of a
fresh cluster). Rates drift between rounds, so the ratio of the two runs within each round,
back to back, is the figure to judge by: its median and range are printed beside the medians.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.common import ROOT
from bench.run import _say, cluster_for, run_worker

CASES = {"producer": 100_000, "batch": 60_000, "single": 6_000, "plain": 300_000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("ref", help="the commit to compare with (its bench.ours and app code)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (6)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first, not counted (1)")
    parser.add_argument("--scale", type=float, default=1.0, help="times the messages per case")
    parser.add_argument("--bootstrap", help="use this cluster (else start one of its own)")
    parser.add_argument("--port-offset", type=int, default=700, help="its own cluster's ports")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    messages = {case: max(int(n * args.scale), 50) for case, n in CASES.items()}
    rates: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory(prefix="kafka-ab-") as tmp, cluster_for(args) as where:
        before = Path(tmp) / "before"
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", str(before), args.ref], check=True)
        try:
            cluster, topic = where[0], f"ab-{uuid.uuid4().hex[:8]}"
            cluster.create_topics([topic])
            run_worker("bench.ours", "producer", cluster.bootstrap, topic, messages["plain"])
            for round_ in range(-args.warmup, args.rounds):
                order = [("before", before), ("after", ROOT)][:: 1 if round_ % 2 == 0 else -1]
                label = f"round {round_ + 1}" if round_ >= 0 else "warm-up"
                for case, n in messages.items():
                    for name, checkout in order:
                        result = run_worker(
                            "bench.ours", case, cluster.bootstrap, topic, n, cwd=checkout
                        )
                        if round_ >= 0:
                            rates[name].setdefault(case, []).append(result["rate"])
                        _say(f"{label}: {name} {case} {result['rate']:,.0f} msg/s")
        finally:
            subprocess.run([*git, "remove", "--force", str(before)], check=False)
    print(f"| Case | {args.ref} (median msg/s) | this checkout | ÷ | per round: median (range) |")
    print("|---|---:|---:|---:|---:|")
    for case in messages:
        old, new = (statistics.median(rates[name][case]) for name in ("before", "after"))
        pairs = zip(rates["after"][case], rates["before"][case], strict=True)
        paired = sorted(a / b for a, b in pairs)
        spread = f"{statistics.median(paired):.2f}x ({paired[0]:.2f}-{paired[-1]:.2f})"
        print(f"| {case} | {old:,.0f} | {new:,.0f} | {new / old:.2f}x | {spread} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
