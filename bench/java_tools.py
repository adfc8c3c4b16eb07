"""Apache Kafka's own benchmark tools (kafka-tools jar from Maven Central), run and parsed.

Each tool reports its own timing, so the JVM's start-up is never counted:

- ProducerPerformance: the final "N records sent, X records/sec ..." line (send loop + flush).
- ConsumerPerformance: ``fetch.nMsg.sec`` of its CSV line (excludes joining the group).
- VerifiableConsumer: its JSON events; rate = N / (last ``offsets_committed`` -
  ``partitions_assigned``), the same span bench/ours.py times for our consumers.
- EndToEndLatency: "Avg latency" and "Percentiles: 50th = a, 99th = b, 99.9th = c" (whole ms).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import LINGER_MS

LOG4J2 = Path(__file__).with_name("log4j2-quiet.xml")
PACKAGE = "org.apache.kafka.tools."


class ToolError(RuntimeError):
    pass


class JavaTools:
    def __init__(self, lib: Path, workdir: Path, timeout: float = 600) -> None:
        self.java = shutil.which("java") or "java"
        self.lib = lib
        self.workdir = workdir
        self.timeout = timeout

    def command(self, tool: str, *args: str) -> list[str]:
        return [
            self.java,
            "-Xms256m",
            "-Xmx1g",
            f"-Dlog4j2.configurationFile={LOG4J2}",
            "-cp",
            f"{self.lib}/*",
            PACKAGE + tool,
            *args,
        ]

    def run(self, tool: str, *args: str) -> str:
        result = subprocess.run(
            self.command(tool, *args),
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
            raise ToolError(f"{tool} exited with {result.returncode}:\n{tail}")
        return result.stdout

    def properties(self, **props: object) -> str:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (deleted with workdir)
            "w", suffix=".properties", dir=self.workdir, delete=False
        )
        with handle:
            for key, value in props.items():
                handle.write(f"{key.replace('_', '.')}={value}\n")
        return handle.name

    # -- the tools -------------------------------------------------------------------------

    def producer_args(
        self, bootstrap: str, topic: str, records: int, payload_file: Path, rate: int
    ):
        """ProducerPerformance with the app producer's settings and real demo messages."""
        return [
            "--bootstrap-server", bootstrap, "--topic", topic,
            "--num-records", str(records), "--throughput", str(rate),
            "--payload-file", str(payload_file),
            "--reporting-interval", "3600000",
            "--command-property", "acks=all", "enable.idempotence=true",
            f"linger.ms={LINGER_MS}", "compression.type=lz4",
        ]  # fmt: skip

    def producer_performance(
        self, bootstrap: str, topic: str, records: int, payload_file: Path
    ) -> dict[str, float]:
        out = self.run(
            "ProducerPerformance", *self.producer_args(bootstrap, topic, records, payload_file, -1)
        )
        return parse_producer_performance(out)

    def start_load(self, bootstrap: str, topic: str, rate: int, payload_file: Path):
        """Background ProducerPerformance at ``rate`` msg/s; the caller terminates it."""
        args = self.producer_args(bootstrap, topic, rate * 3600, payload_file, rate)
        return subprocess.Popen(
            self.command("ProducerPerformance", *args),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def consumer_performance(
        self, bootstrap: str, topic: str, records: int, group: str
    ) -> dict[str, float]:
        out = self.run(
            "ConsumerPerformance",
            "--bootstrap-server", bootstrap, "--topic", topic,
            "--num-records", str(records), "--group", group, "--timeout", "60000",
            "--reporting-interval", "3600000",
        )  # fmt: skip
        return parse_consumer_performance(out)

    def verifiable_consumer(
        self, bootstrap: str, topic: str, records: int, group: str, max_poll_records: int
    ) -> dict[str, float]:
        config = self.properties(max_poll_records=max_poll_records)
        out = self.run(
            "VerifiableConsumer",
            "--bootstrap-server", bootstrap, "--topic", topic, "--group-id", group,
            "--max-messages", str(records), "--reset-policy", "earliest",
            "--command-config", config,
        )  # fmt: skip
        return parse_verifiable_consumer(out, records)

    def end_to_end_latency(
        self, bootstrap: str, topic: str, probes: int, record_size: int
    ) -> dict[str, float]:
        out = self.run(
            "EndToEndLatency",
            "--bootstrap-server", bootstrap, "--topic", topic,
            "--num-records", str(probes), "--producer-acks", "all",
            "--record-size", str(record_size),
        )  # fmt: skip
        return parse_end_to_end_latency(out, probes)


# -- parsers -------------------------------------------------------------------------------


def parse_producer_performance(out: str) -> dict[str, float]:
    """The total line is the one with percentiles; progress lines have none."""
    pattern = re.compile(r"(\d+) records sent, ([\d.]+) records/sec .*99\.9th")
    for line in reversed(out.splitlines()):
        match = pattern.search(line)
        if match:
            return {"messages": int(match[1]), "rate": float(match[2])}
    raise ToolError(f"no total line in ProducerPerformance output:\n{out[-1000:]}")


def parse_consumer_performance(out: str) -> dict[str, float]:
    lines = [line for line in out.splitlines() if "," in line]
    header = next((i for i, line in enumerate(lines) if "fetch.nMsg.sec" in line), None)
    if header is None or header + 1 >= len(lines):
        raise ToolError(f"no CSV stats in ConsumerPerformance output:\n{out[-1000:]}")
    rows = list(csv.reader(io.StringIO("\n".join(lines[header : header + 2]))))
    row = dict(zip((c.strip() for c in rows[0]), (v.strip() for v in rows[1]), strict=False))
    return {
        "messages": int(float(row["data.consumed.in.nMsg"])),
        "rate": float(row["fetch.nMsg.sec"]),
        "seconds": float(row["fetch.time.ms"]) / 1000,
    }


def parse_verifiable_consumer(out: str, records: int) -> dict[str, float]:
    assigned_at = None
    committed_at = None
    consumed = 0
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        name = event.get("name")
        if name == "partitions_assigned" and event.get("partitions") and assigned_at is None:
            assigned_at = event["timestamp"]
        elif name == "records_consumed":
            consumed += event["count"]
        elif name == "offsets_committed":
            if not event.get("success", False):
                raise ToolError(f"VerifiableConsumer commit failed: {line}")
            committed_at = event["timestamp"]
    if assigned_at is None or committed_at is None or consumed < records:
        raise ToolError(f"VerifiableConsumer consumed {consumed} of {records}:\n{out[-1000:]}")
    seconds = max(committed_at - assigned_at, 1) / 1000
    return {"messages": consumed, "seconds": seconds, "rate": consumed / seconds}


def parse_end_to_end_latency(out: str, probes: int) -> dict[str, float]:
    avg = re.search(r"Avg latency: ([\d.]+) ms", out)
    pct = re.search(r"50th = (\d+), 99th = (\d+), 99\.9th = (\d+)", out)
    if not avg or not pct:
        raise ToolError(f"no results in EndToEndLatency output:\n{out[-1000:]}")
    return {
        "probes": probes,
        "avg_ms": float(avg[1]),
        "p50_ms": int(pct[1]),
        "p99_ms": int(pct[2]),
        "p999_ms": int(pct[3]),
    }
