"""python -m localcluster up [--secure] | down [--wipe] | status | env | kill NODE | demo | ui
| jars | secrets | user NAME [--new-password] [--acls FILE]"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.console import Console

from kafka_app.settings import DEFAULT_BATCH_GROUP_ID, DEFAULT_SINGLE_GROUP_ID
from localcluster import acls, admin, secrets, status_view, users
from localcluster.cluster import DEFAULT_HOME, ROOT, LocalCluster
from localcluster.errors import ClusterError
from localcluster.status import gather
from localcluster.watch import count, seconds, watch

# The apps' own default groups: importing kafka_app.settings starts no thread and does no I/O.
GROUPS = [DEFAULT_BATCH_GROUP_ID, DEFAULT_SINGLE_GROUP_ID]
console = Console(stderr=True, highlight=False)
SECURE_HELP = (
    "the secured profile (docker-compose.secure.yml: SASL_SSL, SCRAM, ACLs); later commands"
    " remember it (also LOCALCLUSTER_SECURE=1)"
)


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


def cmd_secrets() -> int:
    folder = ROOT / "secrets"
    written = secrets.generate(folder)
    say(f"wrote {', '.join(written)} in {folder}" if written else f"{folder} is complete")
    return 0


def cmd_user(cluster: LocalCluster, args: argparse.Namespace) -> int:
    """Add a SCRAM user (its password in secrets/NAME.password), or give one a new password;
    with --acls, grant the lines of a file of secure/acls.conf's kind."""
    if not cluster.secure:
        raise ClusterError("users are for the secured cluster: `localcluster up --secure` first")
    name, folder = users.check_name(args.name), ROOT / "secrets"
    path = folder / f"{name}.password"
    fresh = args.new_password or not path.exists()
    password = secrets.new_password() if fresh else path.read_text().strip()
    users.set_password(cluster.admin(), name, password)
    if fresh:  # only once the cluster has it: the file is what the apps will log in with
        secrets.save_password(folder, name, password)
    say(f"user {name}: {'a new' if fresh else 'its'} password, in {path}")
    if args.acls:
        bindings = acls.load(args.acls)
        admin.create_acls(cluster.admin(), bindings)
        say(f"granted the {len(bindings)} ACLs of {args.acls}")
    return 0


def cmd_status(cluster: LocalCluster, args: argparse.Namespace) -> int:
    out = status_view.console()
    # Named groups are shown alone; otherwise the apps' groups, and any other reading the topic.
    groups, list_all = (args.group, False) if args.group else (GROUPS, True)
    if args.watch:
        return watch(cluster, out, groups, list_all, args.interval, args.iterations)
    client = cluster.admin()
    snapshot = gather(cluster, client, cluster.quorum, groups, list_all)
    status_view.show(out, status_view.render(snapshot))
    return 1 if snapshot.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster",
        description="Run the Kafka cluster of docker-compose.yml as local JVMs, without Docker.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the nodes that are down and create the topic")
    up.add_argument("--secure", action="store_true", help=SECURE_HELP)
    up.add_argument("--timeout", type=float, help="seconds to wait (LOCALCLUSTER_START_TIMEOUT)")
    down = sub.add_parser("down", help="stop every node (SIGTERM, then SIGKILL)")
    down.add_argument("--wipe", action="store_true", help="also delete the cluster's data")
    down.add_argument(
        "--timeout", type=float, help="seconds before SIGKILL (LOCALCLUSTER_STOP_TIMEOUT)"
    )
    status = sub.add_parser(
        "status", help="brokers, quorum, partitions, dead letters, group lag and members"
    )
    status.add_argument(
        "--group",
        action="append",
        help="consumer group to show, repeatable (default: the apps' groups and every group"
        " with a member reading the topic)",
    )
    status.add_argument("--watch", action="store_true", help="refresh the view until Ctrl-C")
    status.add_argument(
        "--interval", type=seconds, default=2.0, help="seconds between refreshes (default 2)"
    )
    status.add_argument(
        "--iterations", type=count, metavar="N", help="with --watch, stop after N refreshes"
    )
    kill = sub.add_parser("kill", help="SIGKILL one node, as a crash would")
    kill.add_argument("node", type=int, help="node id (0, 1 or 2)")
    demo = sub.add_parser("demo", help="bring the cluster up and run the app services")
    demo.add_argument("--keep-cluster", action="store_true", help="leave the cluster running")
    demo.add_argument("--secure", action="store_true", help=SECURE_HELP)
    sub.add_parser("secrets", help="write the secured profile's CA, certificate and passwords")
    user = sub.add_parser("user", help="add a SCRAM user, or give it a new password (secured)")
    user.add_argument("name", help="the principal: User:NAME in ACLs")
    user.add_argument(
        "--new-password", action="store_true", help="replace its password (rotate it)"
    )
    user.add_argument(
        "--acls", type=Path, metavar="FILE", help="grant these lines of secure/acls.conf's kind"
    )
    sub.add_parser("env", help="shell lines pointing the scripts at this cluster (for eval)")
    sub.add_parser("ui", help="kaskade's terminal view: topics, groups, members and lag")
    sub.add_parser("jars", help="resolve Kafka's jars and print their folder")
    args = parser.parse_args(argv)

    commands = {
        "up": cmd_up, "down": cmd_down, "status": cmd_status, "env": cmd_env,
        "kill": cmd_kill, "demo": cmd_demo, "ui": cmd_ui, "jars": cmd_jars, "user": cmd_user,
    }  # fmt: skip
    try:
        if args.command == "secrets":
            return cmd_secrets()
        cluster = LocalCluster(say=say, secure=getattr(args, "secure", False))
        return commands[args.command](cluster, args)
    except ClusterError as exc:
        console.print(f"localcluster: error: {exc}", markup=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("localcluster: interrupted", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
