"""Medians, ratios, goals and the markdown report of bench.run."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

NAMES = {
    "ours": "Ours",
    "tool": "Kafka tool",
    "kafka-python": "kafka-python",
    "aiokafka": "aiokafka",
}
PROFILE_LINES = 60
TIMES = "\u00d7"  # the multiplication sign
HERE = Path(__file__).parent


@dataclasses.dataclass
class Goal:
    against: str  # "tool" or a peer name
    op: str  # ">=" (throughput: ours / theirs) or "<=" (latency: ours p99 / theirs p99)
    ratio: float
    if_missed: str = ""  # what bounds the figure, shown when the goal is missed

    def text(self) -> str:
        sign = "≥" if self.op == ">=" else "≤"
        what = "p99 " if self.op == "<=" else ""
        return f"{what}{sign} {self.ratio:g}{TIMES} {NAMES[self.against]}"

    def met(self, ratio: float | None) -> bool | None:
        if ratio is None:
            return None
        return ratio >= self.ratio if self.op == ">=" else ratio <= self.ratio


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def is_latency(figure: dict) -> bool:
    return "p99_ms" in figure


def describe(figure: dict) -> str:
    if "error" in figure:
        return f"failed: {figure['error']}"
    if is_latency(figure):
        return (
            f"p50 {figure['p50_ms']} ms, p99 {figure['p99_ms']} ms,"
            f" avg {figure['avg_ms']:.2f} ms ({figure['probes']} probes)"
        )
    return f"{figure['rate']:,.0f} msg/s ({figure['messages']:,} messages)"


def headline(figure: dict) -> float:
    """The figure a ratio is taken on: msg/s, or p99 in whole ms (a 0 counts as 1)."""
    return max(figure["p99_ms"], 1) if is_latency(figure) else figure["rate"]


def summary(comparisons: list, results: dict) -> dict[str, dict[str, Any]]:
    """Per comparison: the median figures of each contestant and the median of per-run ratios."""
    out: dict[str, dict[str, Any]] = {}
    for comparison in comparisons:
        by_name = results.get(comparison.key, {})
        entry: dict[str, Any] = {"medians": {}, "ratios": {}, "goals": []}
        for name, runs in by_name.items():
            good = [r for r in runs if "error" not in r]
            if not good:
                entry["medians"][name] = None
                continue
            keys = ("p50_ms", "p99_ms", "avg_ms") if is_latency(good[0]) else ("rate",)
            entry["medians"][name] = {k: statistics.median(r[k] for r in good) for k in keys}
        ours = by_name.get("ours", [])
        for name, runs in by_name.items():
            if name == "ours":
                continue
            ratios = [
                headline(a) / headline(b)
                for a, b in zip(ours, runs, strict=False)
                if "error" not in a and "error" not in b and headline(b) > 0
            ]
            entry["ratios"][name] = statistics.median(ratios) if ratios else None
        for goal in comparison.goals:
            ratio = entry["ratios"].get(goal.against)
            entry["goals"].append(
                {
                    "goal": goal.text(),
                    "ratio": ratio,
                    "met": goal.met(ratio),
                    "if_missed": goal.if_missed,
                }
            )
        out[comparison.key] = entry
    return out


def _figure(median: dict | None, unit: str) -> str:
    if median is None:
        return "failed"
    if unit == "ms":
        return f"{median['p50_ms']:g} / {median['p99_ms']:g}"
    return f"{median['rate']:,.0f}"


def _ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}{TIMES}"


def _verdict(goal: dict) -> str:
    mark = {True: "met", False: "MISSED", None: "n/a"}[goal["met"]]
    return f"{goal['goal']}: {mark}"


def table(comparisons: list, results: dict, settings: Any) -> str:
    stats = summary(comparisons, results)
    peers = [
        p
        for p in ("kafka-python", "aiokafka")
        if any(p in results.get(c.key, {}) for c in comparisons)
    ]
    head = ["Comparison", "Unit", "Ours", "Kafka tool", "Ours ÷ tool"]
    for peer in peers:
        head += [peer, f"Ours ÷ {peer}"]
    head.append("Goals")
    rows = [head, ["---", "---"] + ["---:"] * (len(head) - 3) + ["---"]]
    for comparison in comparisons:
        entry = stats[comparison.key]
        unit = "p50 / p99 ms" if comparison.unit == "ms" else "msg/s"
        row = [
            f"{comparison.title} — vs {comparison.tool}",
            unit,
            _figure(entry["medians"].get("ours"), comparison.unit),
            _figure(entry["medians"].get("tool"), comparison.unit),
            _ratio(entry["ratios"].get("tool")),
        ]
        for peer in peers:
            if peer in entry["medians"]:
                row += [
                    _figure(entry["medians"][peer], comparison.unit),
                    _ratio(entry["ratios"].get(peer)),
                ]
            else:
                row += ["—", "—"]
        row.append("; ".join(_verdict(g) for g in entry["goals"]) or "—")
        rows.append(row)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


def per_run_table(comparisons: list, results: dict) -> str:
    lines = ["| Comparison | Contestant | Figures, run by run |", "|---|---|---|"]
    for comparison in comparisons:
        for name, runs in results.get(comparison.key, {}).items():
            cells = "; ".join(describe(r) for r in runs)
            lines.append(f"| {comparison.key} | {NAMES.get(name, name)} | {cells} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Machine and versions
# --------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": mem_kib / 1024 / 1024,
        # The kernel's version number only: its build suffix would name the host, not the machine.
        "kernel": platform.release().split("-")[0],
        "load_before": os.getloadavg(),
    }


def versions(lib: Path, peers: dict[str, str]) -> dict[str, str]:
    import confluent_kafka
    import msgspec

    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    kafka = next(
        (
            m[1]
            for p in lib.glob("kafka-clients-*.jar")
            if (m := re.search(r"-([\d.]+)\.jar$", p.name))
        ),
        "unknown",
    )
    found = {
        "Python": platform.python_version(),
        "confluent-kafka": importlib.metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "msgspec": msgspec.__version__,
        "Apache Kafka (brokers and tools)": kafka,
        "Java": (java.stderr.splitlines() or ["unknown"])[0],
    }
    for peer in ("kafka-python", "aiokafka"):
        try:
            found[peer] = importlib.metadata.version(peer)
        except importlib.metadata.PackageNotFoundError:
            found[peer] = "not installed"
        if peer not in peers:
            found[peer] += " (skipped)"
    return found


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def markdown(
    comparisons: list,
    results: dict,
    *,
    settings: Any,
    machine: dict,
    versions: dict,
    record_size: int,
    profiles: dict[str, Path],
    elapsed: float,
    bootstrap: str,
    metrics_cost: str = "",
) -> str:
    stats = summary(comparisons, results)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = "{:.2f} / {:.2f} / {:.2f}"
    out = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`python -m bench.run`) on {now} in {elapsed / 60:.1f} min"
        + (" — **a --quick smoke run: figures are not meaningful**." if settings.quick else "."),
        "Figures are **medians of "
        f"{settings.runs} run{'s' if settings.runs != 1 else ''}**; every ratio is taken"
        " between contestants of the same run, then the median of those ratios is shown.",
        "",
        "## Results",
        "",
        table(comparisons, results, settings),
        "",
        "## Goals",
        "",
    ]
    for comparison in comparisons:
        for goal in stats[comparison.key]["goals"]:
            mark = {True: "[x]", False: "[ ]", None: "[?]"}[goal["met"]]
            why = f" — {goal['if_missed']}" if goal["met"] is False and goal["if_missed"] else ""
            out.append(
                f"- {mark} {comparison.title}: {_verdict(goal)} ({_ratio(goal['ratio'])}){why}"
            )
    if metrics_cost:
        out += ["", metrics_cost]
    if (HERE / "report-security.md").exists():  # python -m bench.security's last run
        out += ["", _text("report-security.md")]
    out += [
        "",
        "## Machine and versions",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores; RAM {machine['ram_gib']:.1f} GiB;"
        f" Linux {machine['kernel']}",
        "- Load average (1/5/15 min) before: "
        + load.format(*machine["load_before"])
        + ", after: "
        + load.format(*machine.get("load_after", (0, 0, 0))),
        f"- Cluster: 3 KRaft brokers of docker-compose.yml run as local JVMs by localcluster,"
        f" on the same machine as the clients (`{bootstrap}`)",
    ]
    out += [f"- {name}: {value}" for name, value in versions.items()]
    out += [
        "",
        "## Settings",
        "",
        f"- N = {settings.messages:,} messages for the producer and plain consumption;"
        f" {settings.batch_messages:,} for the batch consumer;"
        f" {settings.single_messages:,} for the single consumer;"
        f" {settings.probes} latency probes per contestant;"
        f" background load {settings.load_rate:,} msg/s.",
        f"- Messages: real demo messages (`MessageModel`, uuid4 id as key), {record_size} bytes"
        " of JSON on average. ProducerPerformance sends the same JSON lines (`--payload-file`),"
        " without keys; EndToEndLatency sends random bytes of the same size.",
        "- Every comparison uses fresh topics shaped like final-1-topic (3 partitions, RF 2);"
        " the consumers of a comparison read the same pre-filled topic, each in a new group.",
        "",
        _text("report-method.md"),
        "",
        "## Every run",
        "",
        per_run_table(comparisons, results),
    ]
    if profiles:
        out += [
            "",
            "## Profiles of our code paths (pyinstrument, wall clock)",
            "",
            _text("report-profiles.md"),
        ]
        for key, path in profiles.items():
            lines = path.read_text(encoding="utf-8").splitlines()
            body = "\n".join(line for line in lines[:PROFILE_LINES] if line.strip())
            out += ["", f"### {key}", "", "```text", body, "```"]
    out += ["", _text("report-bounds.md"), "", commit_evidence(results, settings, profiles)]
    return "\n".join(out) + "\n"


def overhead_only(metrics_cost: str, *, machine: dict, quick: bool) -> str:
    """The report of ``--metrics-overhead-only``: that comparison and the machine it ran on."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = "{:.2f} / {:.2f} / {:.2f}"
    out = [
        "# Benchmarks: metrics off and on",
        "",
        f"Generated by `python -m bench.run --metrics-overhead-only` on {now}"
        + (" — **a --quick smoke run: figures are not meaningful**." if quick else "."),
        "",
        metrics_cost,
        "",
        f"CPU: {machine['cpu']}, {machine['cores']} cores; load average (1/5/15 min) before: "
        + load.format(*machine["load_before"])
        + ", after: "
        + load.format(*machine.get("load_after", (0, 0, 0))),
    ]
    return "\n".join(out) + "\n"


def _text(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8").strip()


def commit_share(profile: Path) -> float | None:
    """Share of the profiled wall time spent in the synchronous commit,
    kafka_app.commits.commit_offsets (pyinstrument text)."""
    total = None
    for line in profile.read_text(encoding="utf-8").splitlines():
        match = re.match(r"[\s|`-]*([\d.]+) (\S+)", line)
        if not match:
            continue
        if total is None:
            total = float(match[1])
        elif match[2] == "commit_offsets":
            return float(match[1]) / total if total else None
    return None


def commit_evidence(results: dict, settings: Any, profiles: dict[str, Path]) -> str:
    """Milliseconds per synchronous commit cycle, per contestant, and our share in commit."""
    names = ["ours", "tool", "kafka-python", "aiokafka"]
    lines = [
        "### Evidence: the synchronous commit cycle",
        "",
        "Median milliseconds per commit cycle (fetch, decode, commit and wait) = messages per"
        " commit ÷ rate, and the share of our consumer's wall time in the synchronous commit"
        " (`kafka_app.commits.commit_offsets`, from the profiles above when `--profile` is given):",
        "",
        "| Consumer | " + " | ".join(NAMES[n] for n in names) + " | Ours: share in commit |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for key, per_commit in (("batch", 10), ("single", 1)):
        by_name = results.get(key, {})
        cells = []
        for name in names:
            rates = [r["rate"] for r in by_name.get(name, []) if "error" not in r]
            cells.append(f"{1000 * per_commit / statistics.median(rates):.2f}" if rates else "—")
        share = commit_share(profiles[key]) if key in profiles else None
        cells.append(f"{share:.0%}" if share is not None else "—")
        label = f"{key} ({per_commit} message{'s' if per_commit > 1 else ''} per commit)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
