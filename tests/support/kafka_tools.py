"""Kafka's own Java tools, run from the jars the local cluster runs on, and the offsets they see.

:func:`witness_offsets` asks GetOffsetShell (Java AdminClient) where each partition of a topic
starts and ends; :mod:`support.witness` reads what lies between with ConsoleConsumer.
"""

from __future__ import annotations

import functools
import re
import subprocess
import time
from pathlib import Path

WITNESS_LOG4J2 = Path(__file__).with_name("log4j2-witness.xml")
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
GET_OFFSET_SHELL = "org.apache.kafka.tools.GetOffsetShell"


@functools.cache
def kafka_java() -> tuple[str, Path]:
    """The java binary and the folder of Kafka's jars: the ones the local cluster runs on."""
    from localcluster import jars
    from localcluster.cluster import LocalCluster

    return jars.require_java(), LocalCluster(say=lambda _message: None).lib()


def java_tool(main: str, *args: str, brief: bool = False) -> list[str]:
    """The command line of one of Kafka's Java tools; it logs warnings only, to stderr.
    `brief`: a tool that runs for a moment, which the JIT's optimizing tier would only slow."""
    java, lib = kafka_java()
    return [
        java,
        "-Xmx512m",
        "-XX:+UseSerialGC",  # one GC thread: the tools run next to the brokers on few cores
        *(["-XX:TieredStopAtLevel=1"] if brief else []),
        f"-Dlog4j2.configurationFile={WITNESS_LOG4J2}",
        "-cp",
        f"{lib}/*",
        main,
        *args,
    ]


def witness_offsets(bootstrap: str, topic: str, timeout: float = 90) -> dict[int, tuple[int, int]]:
    """(first offset, end offset) of every partition of the topic, as Kafka's GetOffsetShell
    (Java AdminClient, ListOffsets) reports them: where a read from the beginning to the end
    starts and stops. Fails if the topic is unknown or a partition did not answer."""
    deadline = time.monotonic() + timeout
    pattern = re.escape(topic)  # --topic takes a regular expression (a full match)
    args = ["--bootstrap-server", bootstrap, "--topic", pattern, "--time"]
    runs = {
        spec: subprocess.Popen(
            java_tool(GET_OFFSET_SHELL, *args, spec, brief=True),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for spec in ("earliest", "latest")
    }
    answers: dict[str, dict[int, int]] = {}
    try:
        for spec, run in runs.items():
            try:
                out, err = run.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"GetOffsetShell gave no {spec} offsets of {topic} in {timeout:.0f} s"
                ) from None
            offsets = {}
            for line in out.decode().splitlines():
                name, partition, offset = line.rsplit(":", 2)
                if name == topic:
                    offsets[int(partition)] = int(offset)
            errors = err.decode(errors="replace")
            # A partition whose offset it could not get is left out with "Skip getting offsets
            # for topic-partition ..." on stderr, and the exit status is still 0.
            if run.returncode != 0 or not offsets or "Skip getting offsets" in errors:
                raise AssertionError(
                    f"GetOffsetShell could not get the {spec} offsets of {topic}"
                    f" (exit status {run.returncode}, got {offsets}):\n{errors}"
                )
            answers[spec] = offsets
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
                run.wait()
    first, end = answers["earliest"], answers["latest"]
    if set(first) != set(end) or set(end) != set(range(len(end))):
        raise AssertionError(f"partitions of {topic} missing: first offsets {first}, ends {end}")
    return {p: (first[p], end[p]) for p in sorted(end)}
