"""python -m localcluster up | down [--wipe] | status | env | kill NODE | demo | ui | jars"""

from __future__ import annotations

import argparse
import shlex
import sys

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.table import Table

from kafka_app.settings import DEFAULT_BATCH_GROUP_ID, DEFAULT_SINGLE_GROUP_ID
from localcluster import admin
from localcluster.cluster import DEFAULT_HOME, LocalCluster
from localcluster.errors import ClusterError

# The apps' own default groups: importing kafka_app.settings starts no thread and does no I/O.
GROUPS = [DEFAULT_BATCH_GROUP_ID, DEFAULT_SINGLE_GROUP_ID]
console = Console(stderr=True, highlight=False)


def say(message: str) -> None:
    console.print(message, markup=False, soft_wrap=True)


def cmd_up(cluster: LocalCluster, args: argparse.Namespace) -> int:
    elapsed = cluster.up(timeout=args.timeout)
    say(f"up in {elapsed:.1f}s")
    return 0


def cmd_down(cluster: LocalCluster, args: argparse.Namespace) -> int:
    cluster.down(wipe=args.wipe, timeout=args.timeout)
    return 0


def cmd_kill(cluster: LocalCluster, args: argparse.Namespace) -> int:
    cluster.kill(args.node)
    say(f"killed node {args.node}; `python -m localcluster up` brings it back")
    return 0


def cmd_jars(cluster: LocalCluster, args: argparse.Namespace) -> int:
    print(cluster.lib())
    return 0


def cmd_env(cluster: LocalCluster, args: argparse.Namespace) -> int:
    """Shell lines for `eval "$(python -m localcluster env)"`: the scripts, and later
    localcluster commands, then use this cluster."""
    print(f"# {cluster.describe()}")
    print(f"export KAFKA_BOOTSTRAP_SERVERS={shlex.quote(cluster.bootstrap)}")
    if cluster.home != DEFAULT_HOME:
        print(f"export LOCALCLUSTER_HOME={shlex.quote(str(cluster.home))}")
    return 0


def cmd_demo(cluster: LocalCluster, args: argparse.Namespace) -> int:
    from localcluster.demo import run_demo

    return run_demo(cluster, keep_cluster=args.keep_cluster)


def cmd_ui(cluster: LocalCluster, args: argparse.Namespace) -> int:
    from localcluster.ui import run_ui

    return run_ui(cluster)


def cmd_status(cluster: LocalCluster, args: argparse.Namespace) -> int:
    out = Console(highlight=False)
    out.print(f"Status of {cluster.describe()}", markup=False, soft_wrap=True)
    running = {node.name: node.pid() for node in cluster.nodes}
    client = admin.admin_client(cluster.bootstrap)
    try:
        registered = admin.registered_brokers(client)
    except Exception as exc:
        registered = []
        out.print(f"[red]cannot reach the cluster at {cluster.bootstrap}: {admin.wait_error(exc)}")

    brokers = Table(title=f"Brokers (bootstrap {cluster.bootstrap})")
    for column in ("node", "service", "pid", "registered", "log"):
        brokers.add_column(column)
    for node in cluster.nodes:
        pid = running[node.name]
        brokers.add_row(
            str(node.node_id),
            node.name,
            str(pid) if pid else "[red]down",
            "yes" if node.node_id in registered else "[red]no",
            str(node.log_file),
        )
    out.print(brokers)
    if not registered:
        return 1

    quorum = cluster.quorum()
    out.print(
        f"Controller quorum: leader {quorum.leader if quorum.leader is not None else '[red]none'},"
        f" voters {quorum.voters}, observers {quorum.observers}"
    )

    topic = cluster.model.topic.name
    parts = admin.topic_partitions(client, topic)
    ends = admin.end_offsets(client, topic, [p.partition for p in parts])
    out.print(partition_table(f"Topic {topic}", parts, ends))
    status = 0
    dead_letters = cluster.model.dead_letter_topic.name
    try:
        out.print(dead_letter_table(client, dead_letters))
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            why = "does not exist: `python -m localcluster up` creates it"
        else:
            why = f"cannot be described: {admin.wait_error(exc)}"
        out.print(f"[red]dead-letter topic {dead_letters} {why}", soft_wrap=True)
        status = 1

    groups = Table(title="Consumer groups")
    for column in ("group", "partition", "committed", "end offset", "lag"):
        groups.add_column(column, justify="right")
    for group in args.group or GROUPS:
        committed = admin.committed_offsets(
            cluster.bootstrap, group, topic, [p.partition for p in parts]
        )
        for p in parts:
            offset = committed.get(p.partition)
            lag = ends[p.partition] - offset if offset is not None else ends[p.partition]
            groups.add_row(group, str(p.partition), str(offset if offset is not None else "-"),
                           str(ends[p.partition]), str(lag))  # fmt: skip
    out.print(groups)
    return status


def dead_letter_table(client: AdminClient, topic: str) -> Table:
    """The dead-letter topic's partitions, with the records each holds and their total."""
    parts = admin.topic_partitions(client, topic)
    numbers = [p.partition for p in parts]
    starts = admin.start_offsets(client, topic, numbers)
    ends = admin.end_offsets(client, topic, numbers)
    records = sum(ends[n] - starts[n] for n in numbers)
    return partition_table(f"Dead-letter topic {topic}: {records} records", parts, ends, starts)


def partition_table(
    title: str,
    parts: list[admin.PartitionState],
    ends: dict[int, int],
    starts: dict[int, int] | None = None,
) -> Table:
    """Leader, replicas, ISR and end offset per partition; given the start offsets too, the
    records each partition holds (end minus start: records before the start have expired)."""
    table = Table(title=title)
    columns = ["partition", "leader", "replicas", "isr"]
    columns += ["end offset"] if starts is None else ["start offset", "end offset", "records"]
    for column in columns:
        table.add_column(column, justify="right")
    for p in parts:
        full = len(p.isr) == len(p.replicas)
        row = [
            str(p.partition),
            str(p.leader) if p.leader is not None else "[red]none",
            ",".join(map(str, p.replicas)),
            ",".join(map(str, p.isr)) if full else f"[red]{','.join(map(str, p.isr))}",
        ]
        end = ends[p.partition]
        if starts is None:
            row.append(str(end))
        else:
            start = starts[p.partition]
            row += [str(start), str(end), str(end - start)]
        table.add_row(*row)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster",
        description="Run the Kafka cluster of docker-compose.yml as local JVMs, without Docker.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the nodes that are down and create the topic")
    up.add_argument("--timeout", type=float, help="seconds to wait (LOCALCLUSTER_START_TIMEOUT)")
    down = sub.add_parser("down", help="stop every node (SIGTERM, then SIGKILL)")
    down.add_argument("--wipe", action="store_true", help="also delete the cluster's data")
    down.add_argument(
        "--timeout", type=float, help="seconds before SIGKILL (LOCALCLUSTER_STOP_TIMEOUT)"
    )
    status = sub.add_parser(
        "status", help="brokers, quorum, partitions, dead letters and group lag"
    )
    status.add_argument("--group", action="append", help="consumer group to show (repeatable)")
    kill = sub.add_parser("kill", help="SIGKILL one node, as a crash would")
    kill.add_argument("node", type=int, help="node id (0, 1 or 2)")
    demo = sub.add_parser("demo", help="bring the cluster up and run the app services")
    demo.add_argument("--keep-cluster", action="store_true", help="leave the cluster running")
    sub.add_parser("env", help="shell lines pointing the scripts at this cluster (for eval)")
    sub.add_parser("ui", help="kaskade's terminal view: topics, groups, members and lag")
    sub.add_parser("jars", help="resolve Kafka's jars and print their folder")
    args = parser.parse_args(argv)

    commands = {
        "up": cmd_up, "down": cmd_down, "status": cmd_status, "env": cmd_env,
        "kill": cmd_kill, "demo": cmd_demo, "ui": cmd_ui, "jars": cmd_jars,
    }  # fmt: skip
    try:
        return commands[args.command](LocalCluster(say=say), args)
    except ClusterError as exc:
        console.print(f"localcluster: error: {exc}", markup=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("localcluster: interrupted", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
