"""A status Snapshot as rich tables and lines: printed once by `status`, redrawn by `--watch`."""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from localcluster import admin
from localcluster.status import GroupView, Member, Snapshot, TopicView

RED = "red"
PIPE_WIDTH = 200


def console() -> Console:
    """stdout. When that is no terminal, wide enough that no table wraps its cells, so that
    scripts and tests read one row per line: rich would fit them into 80 columns, or into
    COLUMNS, which describes a terminal (pytest sets it for its children too), not a pipe."""
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = PIPE_WIDTH
    return out


def show(out: Console, parts: list[RenderableType]) -> None:
    """Prints the parts of a view as a terminal shows them: a line longer than the console is
    not broken (the terminal wraps it, a pipe keeps it whole), while tables fit the width."""
    for part in parts:
        out.print(part, soft_wrap=isinstance(part, Text))


def render(snapshot: Snapshot, footer: str | None = None) -> list[RenderableType]:
    """Everything the snapshot holds, top to bottom, and `footer` last."""
    parts: list[RenderableType] = [Text(f"Status of {snapshot.describe}")]
    if snapshot.unreachable:
        parts.append(Text(snapshot.unreachable, style=RED))
    parts.append(broker_table(snapshot))
    if snapshot.quorum or snapshot.quorum_problem:
        parts.append(quorum_line(snapshot))
    for view in (snapshot.topic, snapshot.dead_letters):
        if view is not None:
            parts.append(topic_part(view, dead_letters=view is snapshot.dead_letters))
    if snapshot.topic is not None and snapshot.topic.problem is None and not snapshot.unreachable:
        parts += [group_table(snapshot.groups, snapshot.topic), member_table(snapshot.groups)]
        if snapshot.other_groups:
            n = snapshot.other_groups
            groups = "group on the cluster has" if n == 1 else "groups on the cluster have"
            parts.append(
                Text(f"{n} other consumer {groups} no member reading {snapshot.topic.name}:"
                     " --group NAME shows one")
            )  # fmt: skip
    parts += [Text(problem, style=RED) for problem in snapshot.problems]
    if footer:
        parts.append(Text(footer, style="dim"))
    return parts


def broker_table(snapshot: Snapshot) -> Table:
    table = Table(title=f"Brokers (bootstrap {snapshot.bootstrap})")
    for column in ("node", "service", "pid", "registered", "log"):
        table.add_column(column)
    for b in snapshot.brokers:
        table.add_row(
            str(b.node_id),
            b.name,
            str(b.pid) if b.pid else "[red]down",
            "yes" if b.registered else "[red]no",
            b.log,
        )
    return table


def quorum_line(snapshot: Snapshot) -> Text:
    quorum = snapshot.quorum
    if quorum is None:
        return Text(f"Controller quorum: {snapshot.quorum_problem}", style=RED)
    line = Text("Controller quorum: leader ")
    line.append(str(quorum.leader) if quorum.leader is not None else "none",
                style="" if quorum.leader is not None else RED)  # fmt: skip
    line.append(f", voters {quorum.voters}, observers {quorum.observers}")
    if snapshot.quorum_age is not None and snapshot.quorum_age >= 1:
        line.append(f" (asked {snapshot.quorum_age:.0f} s ago)", style="dim")
    return line


def topic_part(view: TopicView, dead_letters: bool) -> RenderableType:
    if view.problem:
        kind = "dead-letter topic" if dead_letters else "topic"
        return Text(f"{kind} {view.name} {view.problem}", style=RED)
    if view.starts is None:
        return partition_table(f"Topic {view.name}", view.parts, view.ends)
    records = sum(view.ends[n] - view.starts[n] for n in view.ends)
    title = f"Dead-letter topic {view.name}: {records} records"
    return partition_table(title, view.parts, view.ends, view.starts)


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


def group_table(groups: list[GroupView], topic: TopicView) -> Table:
    """Per group and partition: committed offset, end offset, lag and the member that owns it.
    A partition never committed shows '-', and its lag is the end offset: the apps start such a
    partition from the earliest offset (auto.offset.reset), so all of it is still to read."""
    table = Table(title=f"Consumer groups on {topic.name}")
    for column in ("group", "state", "partition", "committed", "end offset", "lag"):
        table.add_column(column, justify="left" if column in ("group", "state") else "right")
    table.add_column("member (client.id, host)")
    for group in groups:
        for p in topic.parts:
            end = topic.ends[p.partition]
            offset = group.committed.get(p.partition)
            owner = group.owner(topic.name, p.partition)
            table.add_row(
                Text(group.name),
                group.state,
                str(p.partition),
                str(offset) if offset is not None else "-",
                str(end),
                str(end - offset if offset is not None else end),
                Text(f"{owner.client_id} {owner.host}") if owner else "-",
            )
    return table


def member_table(groups: list[GroupView]) -> Table:
    """Each member of each group with the partitions assigned to it, on every topic."""
    table = Table(title="Group members")
    for column in ("group", "client.id", "host", "partitions"):
        table.add_column(column)
    for group in groups:
        for m in group.members:
            table.add_row(Text(group.name), Text(m.client_id), Text(m.host), assignment(m))
        if not group.members:
            table.add_row(Text(group.name), "-", "-", "no member")
    return table


def assignment(member: Member) -> Text:
    """``final-1-topic [0], [2]``, as the consumers log their assignment; topics separated by
    '; '."""
    topics: dict[str, list[int]] = {}
    for topic, partition in member.assignment:
        topics.setdefault(topic, []).append(partition)
    return Text("; ".join(f"{t} " + ", ".join(f"[{p}]" for p in ps) for t, ps in topics.items()))
