"""What the secured profile costs: ``python -m bench.security [--rounds 4] [--warmup 1]``.

Two clusters of its own side by side, on their own ports: the demo's plaintext one and the
secured one (README.md, "Secure it": SASL_SSL with SCRAM-SHA-512, TLS, StandardAuthorizer and
the ACLs of secure/acls.conf). On each in turn, the order alternating from round to round, our
producer (``producer.main()``, idempotent, as fast as it goes) writes final-1-topic, then our
batch consumer (``batch_message_consumer.main()``, a commit per batch of 10) reads as many in
batch-group: bench.ours drives the real scripts, logged in as the demo's principals on the
secured cluster, so every request pays TLS, SASL and the ACL checks the demo pays. Each round's
ratio secured / plaintext is taken within the round; the report gives medians and ranges.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.run import _say, run_worker
from localcluster.secrets import client_variables

TOPIC, GROUP = "final-1-topic", "batch-group"
SECRETS = Path(__file__).resolve().parents[1] / "secrets"  # localcluster secrets writes them
MESSAGES = 60_000
PRINCIPALS = {"producer": "producer", "batch": "batch-consumer"}
NAMES = {"producer": "Producer", "batch": "Batch consumer"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.security", description=__doc__)
    parser.add_argument("--rounds", type=int, default=4, help="counted rounds (4)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first, not counted (1)")
    parser.add_argument("--messages", type=int, default=MESSAGES, help="per case and round")
    parser.add_argument("--port-offset", type=int, default=700, help="plaintext +N, secured +N+100")
    return parser.parse_args(argv)


@contextlib.contextmanager
def own_cluster(offset: int, secure: bool) -> Iterator[str]:
    """A cluster of its own in a temporary home; its bootstrap servers."""
    home = Path(tempfile.mkdtemp(prefix="kafka-bench-security-"))
    os.environ.update(LOCALCLUSTER_HOME=str(home), LOCALCLUSTER_PORT_OFFSET=str(offset))
    from localcluster.cluster import LocalCluster

    local = LocalCluster(say=_say, secure=secure)
    try:
        local.up()
        yield local.bootstrap
    finally:
        with contextlib.suppress(Exception):
            local.down(wipe=True)
        shutil.rmtree(home, ignore_errors=True)


def one_round(where: dict[str, str], order: list[str], n: int, results: dict, label: str):
    for name in order:
        for case in ("producer", "batch"):
            env = client_variables(PRINCIPALS[case], SECRETS) if name == "secured" else {}
            group = GROUP if case == "batch" else None
            result = run_worker("bench.ours", case, where[name], TOPIC, n, group=group, env=env)
            _say(f"{label}: {name} {case} {result['rate']:,.0f} msg/s")
            if label != "warm-up":
                results.setdefault((name, case), []).append(result)


SECTION = Path(__file__).with_name("report-security.md")  # make bench puts it in BENCHMARKS.md
METHOD = """## What security costs: plaintext and secured

`python -m bench.security --rounds {rounds} --warmup {warmup}` ({date}): two clusters of its
own, up side by side, the demo's plaintext one and the secured profile (README.md, "Secure it":
SASL_SSL with SCRAM-SHA-512, TLS, StandardAuthorizer with secure/acls.conf). On each in turn,
the order alternating from round to round, our producer (`producer.main()`, idempotent, as fast
as it goes) writes {messages:,} messages to final-1-topic, then our batch consumer
(`batch_message_consumer.main()`, a synchronous commit per batch of 10) reads as many in
batch-group; on the secured cluster each logs in as its own principal, so every request pays
TLS, the SCRAM login of each connection and the ACL checks, as the demo does. Each ratio is
taken within a round (median, range in brackets); CPU µs/msg is the client process's (all
threads, librdkafka's TLS included), not the brokers', which share the same cores here. Where
the range is as wide as the cost, read the median as a rough figure."""


def row(case: str, plain: list[dict], secured: list[dict]) -> str:
    ratios = sorted(s["rate"] / p["rate"] for p, s in zip(plain, secured, strict=True))
    rates = [statistics.median(r["rate"] for r in runs) for runs in (plain, secured)]
    cpu = [statistics.median(r.get("cpu_us_per_msg", 0) for r in runs) for runs in (plain, secured)]
    spread = f"{statistics.median(ratios):.2f} ({ratios[0]:.2f} to {ratios[-1]:.2f})"
    more = f"{cpu[0]:.1f} → {cpu[1]:.1f} ({cpu[1] / max(cpu[0], 1e-9) - 1:+.0%})"
    return f"| {NAMES[case]} | {rates[0]:,.0f} | {rates[1]:,.0f} | {spread} | {more} |"


def report(results: dict, args: argparse.Namespace) -> None:
    """The table on stdout, and with the method in bench/report-security.md."""
    lines = [
        "| Row | Plaintext msg/s | Secured msg/s | Secured ÷ plaintext | CPU µs/msg, plaintext → secured |",  # noqa: E501
        "|---|---:|---:|---:|---:|",
        *(row(case, results[("plaintext", case)], results[("secured", case)]) for case in NAMES),
    ]
    print("\n".join(lines))
    method = METHOD.format(date=datetime.date.today().isoformat(), **vars(args))
    SECTION.write_text(f"{method}\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    _say(f"written to {SECTION}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict = {}
    with contextlib.ExitStack() as stack:
        where = {
            "plaintext": stack.enter_context(own_cluster(args.port_offset, secure=False)),
            "secured": stack.enter_context(own_cluster(args.port_offset + 100, secure=True)),
        }
        for round_ in range(-args.warmup, args.rounds):
            order = ["plaintext", "secured"][:: 1 if round_ % 2 == 0 else -1]
            label = f"round {round_ + 1}" if round_ >= 0 else "warm-up"
            one_round(where, order, args.messages, results, label)
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
