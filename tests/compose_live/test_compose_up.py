"""`docker compose up`, live: the real docker-compose.yml and Dockerfile under a real engine.

The tests run in file order against one stack (project kafka-python-demo-live): it comes up,
is checked, takes its faults, goes down and up again, and is removed with its volumes at the
end. Images come from `python -m standins`: present or pulled where that works, stand-ins
built here where it does not (then Kafka UI, which has no stand-in, is left out, and the
figures say so). Without a Docker engine every test skips with one line; with
COMPOSE_LIVE_REQUIRED=1 (set by .ci/run) that is a failure instead.

Published ports are checked where the host listens (docker-proxy's sockets in /proc/net):
no traffic goes to any address but loopback.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import statistics
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from localcluster import admin
from localcluster.nodes import port_in_use
from standins import images
from standins.__main__ import ensure_all
from support.metrics import WORK_COUNTERS, samples
from support.processes import Apps
from support.records import TopicContent, read_records

from .stack import DELIVERED, ROOT, Container, Stack, timestamp

pytestmark = pytest.mark.compose

PROJECT = "kafka-python-demo-live"
TOPIC = "final-1-topic"
BROKERS = ["kafka-0", "kafka-1", "kafka-2"]
EXTERNAL_PORTS = {"kafka-0": 9094, "kafka-1": 9095, "kafka-2": 9096}
BOOTSTRAP = ",".join(f"localhost:{port}" for port in EXTERNAL_PORTS.values())
APPS = ["producer", "batch-consumer", "single-consumer"]
GROUPS = ["batch-group", "single-group"]
UI_IMAGE = "ghcr.io/kafbat/kafka-ui:v1.5.0"
UI_PORT = 8080
SEED_LINES = {
    "producer": f"Message delivered to {TOPIC} [",
    "batch-consumer": "INFO:root:BatchConsumer received: Test message ",
    "single-consumer": "INFO:root:SingleConsumer received: Test message ",
}
FIGURES_FILE = ROOT / "build" / "compose-figures.json"


@dataclass
class Live:
    stack: Stack
    up_at: datetime.datetime  # wall clock of `up`, to compare with the logs' timestamps
    images: dict[str, str]
    ui: bool
    figures: dict[str, Any] = field(default_factory=dict)
    # Before the first build: images of earlier runs are theirs.
    started: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    def record(self, **figures: Any) -> None:
        self.figures.update(figures)
        FIGURES_FILE.parent.mkdir(exist_ok=True)
        FIGURES_FILE.write_text(json.dumps(self.figures, indent=2, default=str) + "\n")
        self.stack.say("FIGURES compose: " + " ".join(f"{k}={v}" for k, v in figures.items()))

    def services(self) -> list[str]:
        return [*BROKERS, "kafka-init", *APPS, *(["kafka-ui"] if self.ui else [])]


REQUIRED = os.environ.get("COMPOSE_LIVE_REQUIRED") == "1"


def skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"live Compose test required here, but {reason}", pytrace=False)
    pytest.skip(f"live Compose test: {reason}")


# Without an engine the whole module is one skip, one line in the summary. Where the test is
# required, the fixture fails each test instead (a collection error would stop the session).
if not REQUIRED and (_no_engine := images.engine_problem()):
    pytest.skip(f"live Compose test: {_no_engine} (.ci/run starts one)", allow_module_level=True)


@pytest.fixture(scope="module")
def live(request: pytest.FixtureRequest) -> Iterator[Live]:
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    started = time.monotonic()

    def say(message: str) -> None:
        """Progress on the terminal as it happens: the image builds and waits are long."""
        with capture.global_and_fixture_disabled():
            print(f"compose-live [{time.monotonic() - started:6.1f}s] {message}", flush=True)

    problem = images.engine_problem()
    if problem:
        skip_or_fail(f"{problem} (.ci/run starts one)")
    busy = [port for port in EXTERNAL_PORTS.values() if port_in_use(port)]
    if busy:
        skip_or_fail(f"ports {busy} are taken (a local cluster? `make down` stops it)")
    how = ensure_all(say)
    ui = "stand-in" not in how.values() and (images.present(UI_IMAGE) or images.try_pull(UI_IMAGE))
    if not ui:
        say(f"Kafka UI left out: {UI_IMAGE} cannot be pulled here, and it has no stand-in")
    elif port_in_use(UI_PORT):
        skip_or_fail(f"port {UI_PORT}, Kafka UI's, is taken")
    stack = Stack(PROJECT, say)
    stack.compose("down", "--volumes", "--remove-orphans", timeout=300)  # an interrupted run's
    live = Live(stack, datetime.datetime.now(datetime.UTC), how, ui)
    try:  # from here on, whatever fails, the logs are kept and the stack removed
        say("building the app image")
        stack.compose("build", timeout=900)
        up = readme_up(ui)
        assert sorted(up[3:] or live.services()) == sorted(live.services()), up
        say(f"README.md's command: docker compose {' '.join(up)}")
        live.up_at = datetime.datetime.now(datetime.UTC)
        stack.compose(*up, timeout=600)
        up_took = datetime.datetime.now(datetime.UTC) - live.up_at
        # `up` returns once kafka-init has completed: it waits for the healthy brokers first.
        live.record(images=how, kafka_ui=ui, up_returned_s=round(up_took.total_seconds(), 1))
        yield live
    finally:
        log = ROOT / "build" / "compose-live.log"
        log.parent.mkdir(exist_ok=True)
        try:
            log.write_text(stack.compose("logs", "--no-color", "--timestamps", timeout=120))
        finally:
            stack.compose("down", "--volumes", "--remove-orphans", timeout=300)
            say(f"stack removed; its logs are in {log.relative_to(ROOT)}")


# --- helpers -----------------------------------------------------------------------------------


def readme_up(ui: bool) -> list[str]:
    """README.md's own `docker compose up` as arguments: the one command where Kafka UI's image
    can be had (detached here), or the one that names every other service, for stand-ins."""
    if ui:
        return ["up", "--build", "--detach"]
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("docker compose up --build -d "):
            return shlex.split(line)[2:]
    raise AssertionError("README.md lacks its `docker compose up --build -d SERVICE...`")


def healthy(stack: Stack, service: str) -> bool:
    return all(c.health == "healthy" for c in stack.containers(service))


def topic_state() -> list[admin.PartitionState]:
    """The topic's partitions, [] while it cannot be asked. A new client each time: one that
    lived through a broker's death may be left knowing no broker (librdkafka#5301)."""
    client = admin.admin_client(BOOTSTRAP)
    try:
        return admin.topic_partitions(client, TOPIC)
    except Exception:
        return []


def full_isr() -> bool:
    parts = topic_state()
    return len(parts) == 3 and all(p.healthy for p in parts)


def end_offsets() -> dict[int, int]:
    return admin.end_offsets(admin.admin_client(BOOTSTRAP), TOPIC, [0, 1, 2], timeout=15)


def committed(group: str) -> dict[int, int]:
    return admin.committed_offsets(BOOTSTRAP, group, TOPIC, timeout=15)


def acked_by_containers(stack: Stack) -> set[tuple[int, int]]:
    """(partition, offset) of every 'Message delivered' line of the producer containers."""
    return {
        (int(m["p"]), int(m["o"]))
        for _, _, text in stack.logs("producer")
        if (m := DELIVERED.search(text)) and m["topic"] == TOPIC
    }


# --- the stack comes up ------------------------------------------------------------------------


def test_brokers_get_healthy_through_their_own_healthcheck(live: Live) -> None:
    stack = live.stack
    stack.wait(lambda: all(healthy(stack, b) for b in BROKERS), 300, "3 healthy brokers")
    took = (datetime.datetime.now(datetime.UTC) - live.up_at).total_seconds()
    probes = []
    for broker in BROKERS:
        for container in stack.containers(broker):
            for probe in stack.inspect(container)["State"]["Health"]["Log"]:
                spent = timestamp(probe["End"]) - timestamp(probe["Start"])
                probes.append(spent.total_seconds() * 1000)
    live.record(
        healthy_after_up_s=round(took, 1),
        probes=len(probes),
        probe_ms_median=round(statistics.median(probes), 1),
        probe_ms_max=round(max(probes), 1),
    )


def test_kafka_init_exits_0_and_the_topic_has_its_shape(live: Live) -> None:
    stack = live.stack

    def init_exited() -> bool:
        return all(c.state["Status"] == "exited" for c in stack.containers("kafka-init"))

    stack.wait(init_exited, 180, "kafka-init to exit")
    (init,) = stack.containers("kafka-init")
    init_log = "\n".join(text for _, _, text in stack.logs("kafka-init"))
    assert init.state["ExitCode"] == 0, f"kafka-init exited {init.state['ExitCode']}:\n{init_log}"
    assert "PartitionCount: 3" in init_log and "ReplicationFactor: 2" in init_log, init_log
    stack.wait(full_isr, 60, f"a full ISR of {TOPIC}")
    parts = topic_state()
    assert [len(p.replicas) for p in parts] == [2, 2, 2], parts
    # The dead-letter topic, shaped alike.
    dead_letters = admin.topic_partitions(admin.admin_client(BOOTSTRAP), f"{TOPIC}.dlq")
    assert [len(p.replicas) for p in dead_letters] == [2, 2, 2], dead_letters


def test_up_again_recreates_nothing_and_the_app_image_was_built_once(live: Live) -> None:
    """The README's command again, without --build: nothing changed, so nothing is recreated
    (each recreation is a rebalance); and one build of the app image left no untagged one."""
    stack = live.stack
    before = {c.name: c.id for c in stack.containers()}
    assert len(before) == len(BROKERS) + 1 + 2 * len(APPS) + live.ui, before  # kafka-init too
    again = [arg for arg in readme_up(live.ui) if arg != "--build"]
    stack.compose(*again, timeout=300)
    after = {c.name: c.id for c in stack.containers()}
    assert after == before, f"`docker compose {' '.join(again)}` recreated containers"
    # Compose labels what it builds with its project: another project's build of the same tag
    # (the secured stack's) leaves an untagged image of its own, and so does an earlier run's.
    ours = f"label=com.docker.compose.project={PROJECT}"
    untagged = stack.docker("images", "--filter", "dangling=true", "--filter", ours, "-q").split()
    created = json.loads(stack.docker("inspect", *untagged)) if untagged else []
    this_run = [i["Id"] for i in created if timestamp(i["Created"]) >= live.started]
    assert not this_run, f"{len(this_run)} untagged images: the app image was built more than once"


def test_every_app_container_gets_healthy_through_its_probes(live: Live) -> None:
    """The apps' healthcheck (kafka_app/probe_check: /healthz and /readyz answer 200) passes in
    every replica; how long after its container started each was first seen healthy."""
    stack = live.stack
    healthy_after: dict[str, float] = {}

    def app_containers() -> list[Container]:
        return [c for c in stack.containers() if c.service in APPS]

    def all_healthy() -> bool:
        now = datetime.datetime.now(datetime.UTC)
        for c in app_containers():
            if c.health == "healthy" and c.name not in healthy_after:
                started = (now - timestamp(c.state["StartedAt"])).total_seconds()
                healthy_after[c.name] = round(started, 1)
        return len(healthy_after) == 2 * len(APPS)

    try:
        stack.wait(all_healthy, 180, "every app container healthy")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {probe_outputs(stack, app_containers())}") from None
    outputs = probe_outputs(stack, app_containers())
    assert all("/readyz: ok" in said for said in outputs.values()), outputs
    live.record(
        apps_healthy_after_start_s=healthy_after,
        apps_healthy_max_s=max(healthy_after.values()),
    )


def probe_outputs(stack: Stack, containers: list[Container]) -> dict[str, str]:
    """Each container's health status and what its last healthcheck printed."""
    found = {}
    for container in containers:
        health = stack.inspect(container)["State"].get("Health") or {}
        last = (health.get("Log") or [{}])[-1].get("Output", "").strip().replace("\n", "; ")
        found[container.name] = f"{health.get('Status')}: {last}"
    return found


def test_metrics_inside_the_containers_show_the_work_counters_moving(live: Live) -> None:
    """/metrics of replica 1 of each app, scraped inside its container, names its client and
    shows its work counter growing (the batch consumer counts once per 30 s window)."""
    stack = live.stack
    grown = {}
    for service in APPS:
        (container, *_) = stack.containers(service)
        counter = WORK_COUNTERS[service]
        first = samples(stack.scrape(container))
        assert first.get(f'kafka_client_brokers_up{{client_id="{container.name}"}}', 0) >= 1, first
        before = first[counter]
        grown[container.name] = stack.wait(
            lambda: samples(stack.scrape(container))[counter] > before,  # noqa: B023 (called now)
            90,
            f"{counter} of {container.name} to grow past {before:g}",
        )
    live.record(work_counter_grew_after_s={name: round(s, 1) for name, s in grown.items()})


def test_seed_lines_come_from_both_replicas_of_every_app(live: Live) -> None:
    stack = live.stack
    wanted = {(f"{s}-{n}", line) for s, line in SEED_LINES.items() for n in (1, 2)}

    def missing() -> set[tuple[str, str]]:
        logs = stack.logs(*APPS)
        seen = {
            (name, line) for name, _, text in logs for line in SEED_LINES.values() if line in text
        }
        return wanted - seen

    try:
        stack.wait(lambda: not missing(), 240, "the seed's log lines from every replica")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; missing: {sorted(missing())}") from None
    first = min(when for _, when, text in stack.logs("producer") if SEED_LINES["producer"] in text)
    live.record(first_delivery_after_up_s=round((first - live.up_at).total_seconds(), 1))


def test_each_replica_is_named_for_its_service_and_number(live: Live) -> None:
    """Replica n of a service takes the client id <service>-<n> (the name Docker's DNS gives
    its address): the groups' members and the producers' messages say which replica is which."""
    client = admin.admin_client(BOOTSTRAP)
    wanted = {
        group: {f"{service}-{n}" for n in (1, 2)}
        for group, service in (
            ("batch-group", "batch-consumer"),
            ("single-group", "single-consumer"),
        )
    }

    def members() -> dict[str, set[str]]:
        described = client.describe_consumer_groups(list(wanted))
        return {
            group: {m.client_id for m in future.result(timeout=15).members}
            for group, future in described.items()
        }

    try:
        live.stack.wait(lambda: members() == wanted, 60, "every replica in its group by name")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; members: {members()}") from None
    texts = "\n".join(text for _, _, text in live.stack.logs("single-consumer"))
    senders = set(re.findall(r"received: Test message \d+ from (\S+)$", texts, re.M))
    assert senders == {"producer-1", "producer-2"}, senders


def test_ports_are_published_on_loopback_only_and_external_listeners_answer(live: Live) -> None:
    stack = live.stack
    published = {}
    for container in stack.containers():
        bindings = stack.inspect(container)["HostConfig"]["PortBindings"] or {}
        for port, hosts in bindings.items():
            published[(container.name, port)] = {h["HostIp"] for h in hosts}
    expected = {(f"{b}-1", f"{p}/tcp") for b, p in EXTERNAL_PORTS.items()}
    assert expected <= set(published), published
    assert all(ips == {"127.0.0.1"} for ips in published.values()), published
    listening = listening_addresses(set(EXTERNAL_PORTS.values()))
    assert listening and all(ip == "127.0.0.1" for ip, _ in listening), listening
    assert {port for _, port in listening} == set(EXTERNAL_PORTS.values()), listening

    # Each EXTERNAL listener alone answers, and advertises all three on localhost: a host
    # client that starts from any one of them reaches every broker.
    for port in EXTERNAL_PORTS.values():
        metadata = admin.admin_client(f"localhost:{port}").list_topics(TOPIC, timeout=15)
        advertised = {(b.host, b.port) for b in metadata.brokers.values()}
        assert advertised == {("localhost", p) for p in EXTERNAL_PORTS.values()}, advertised
        assert len(metadata.topics[TOPIC].partitions) == 3


def listening_addresses(ports: set[int]) -> set[tuple[str, int]]:
    """(IPv4 or IPv6 address, port) of every listening TCP socket on these ports."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.split(":")
            if state != "0A" or int(port, 16) not in ports:  # 0A: LISTEN
                continue
            found.add((decode_address(address, width), int(port, 16)))
    return found


def decode_address(hex_address: str, width: int) -> str:
    raw = bytes.fromhex(hex_address)
    # /proc/net prints each 32-bit word in host (little-endian) order.
    words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
    if width == 8:
        return ".".join(str(b) for b in words[0])
    return ":".join(w.hex() for w in words)


def test_kafka_ui_lists_the_cluster_online(live: Live) -> None:
    """Where its image can be pulled: Kafka UI's API on 127.0.0.1:8080 shows `kraft` online."""
    if not live.ui:
        pytest.skip(f"Kafka UI left out: {UI_IMAGE} cannot be pulled here, and has no stand-in")

    def online() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{UI_PORT}/api/clusters", timeout=5) as r:
                clusters = json.load(r)
        except (OSError, ValueError):
            return False
        return any(c.get("name") == "kraft" and c.get("status") == "online" for c in clusters)

    took = live.stack.wait(online, 240, "Kafka UI to list the cluster kraft as online")
    live.record(kafka_ui_online_after_s=round(took, 1))


# --- faults, through Compose itself ------------------------------------------------------------


def test_broker_sigkill_while_producers_run_loses_nothing(live: Live, tmp_path: Path) -> None:
    """`docker compose kill -s SIGKILL` of the broker that leads most partitions while both
    producer containers and a host producer (through the EXTERNAL listeners, logging each
    acknowledgement with its key) run; then `docker compose start`."""
    stack = live.stack
    leaders = [p.leader for p in topic_state()]
    victim = f"kafka-{max(set(leaders), key=leaders.count)}"
    with Apps(tmp_path, BOOTSTRAP) as apps:
        acked_file = tmp_path / "host-producer.acked"
        # Paced: at full speed it would send all 20,000 before the kill.
        host = apps.start(
            "producer.py", "host-producer", TOPIC, "--interval", 0.002, "--quiet",
            "--progress-interval", 1, "--count", 20_000, "--delivered-log", acked_file,
        )  # fmt: skip
        stack.wait(lambda: len(read_records(acked_file)) >= 1000, 120, "1,000 acks before the kill")
        stack.compose("kill", "--signal", "SIGKILL", victim)
        killed_at = time.monotonic()
        acked_at_kill = len(read_records(acked_file))
        stack.wait(
            lambda: len(read_records(acked_file)) > acked_at_kill + 500,
            120,
            f"500 more acks with {victim} dead",
        )
        failover = time.monotonic() - killed_at
        time.sleep(max(0.0, 10 - failover))  # down for 10 s at least
        stack.compose("start", victim)
        back = stack.wait(lambda: healthy(stack, victim), 180, f"{victim} healthy again")
        isr = stack.wait(full_isr, 180, "a full ISR again")
        code = host.wait(300)
    assert code == 0, host.tail()
    acked = read_records(acked_file)
    containers_acked = acked_by_containers(stack)  # before the read: they go on producing
    content = TopicContent.read(BOOTSTRAP, TOPIC)
    lost = content.missing(acked)
    containers_lost = sorted(containers_acked - set(content.keys))
    live.record(
        kill_victim=victim,
        kill_host_acked=len(acked),
        kill_containers_acked=len(containers_acked),
        kill_lost=len(lost) + len(containers_lost),
        kill_duplicates=content.duplicates(),
        kill_acks_resumed_s=round(failover, 1),
        kill_healthy_again_s=round(back, 1),
        kill_full_isr_s=round(isr, 1),
    )
    assert len(acked) == 20_000
    assert lost == [], f"{len(lost)} acknowledged records not at their offset: {lost[:5]}"
    assert containers_lost == [], f"acknowledged by the producer containers: {containers_lost[:5]}"
    assert content.duplicates() == 0


def test_a_killed_app_container_is_started_again_by_its_restart_policy(live: Live) -> None:
    stack = live.stack
    target = stack.containers("single-consumer")[0]
    before = target.state["RestartCount"]
    # The app's process dies, as in a crash (the engine runs on this machine: its pid is ours).
    os.kill(target.state["Pid"], 9)

    def restarted() -> bool:
        now = next(c for c in stack.containers("single-consumer") if c.id == target.id)
        return now.state["RestartCount"] > before and now.state["Running"]

    took = stack.wait(restarted, 120, f"{target.name} restarted by restart: unless-stopped")
    live.record(app_restarted_after_s=round(took, 1))
    (state,) = [c.state for c in stack.containers("single-consumer") if c.id == target.id]
    assert state["RestartCount"] == before + 1


def test_every_acknowledged_message_is_processed_by_both_groups(live: Live) -> None:
    stack = live.stack
    stack.compose("stop", "producer", timeout=120)
    codes = [c.state["ExitCode"] for c in stack.containers("producer")]
    assert codes == [0, 0], f"producer containers exited {codes}"
    acked = acked_by_containers(stack)
    ends = end_offsets()
    assert all(o < ends[p] for p, o in acked), "an acknowledged offset beyond the end"

    def caught_up() -> bool:
        return all(committed(group) == ends for group in GROUPS)

    took = stack.wait(caught_up, 180, f"both groups to commit {ends}")
    live.record(
        containers_acked=len(acked),
        records_in_topic=sum(ends.values()),
        groups_caught_up_s=round(took, 1),
        lag={group: 0 for group in GROUPS},
    )


def test_down_then_up_keeps_topic_messages_and_committed_offsets(live: Live) -> None:
    stack = live.stack
    content = TopicContent.read(BOOTSTRAP, TOPIC)
    offsets = {group: committed(group) for group in GROUPS}
    stack.compose("down", timeout=300)  # without --volumes
    volumes = stack.docker(
        "volume", "ls", "--quiet", "--filter", f"label=com.docker.compose.project={PROJECT}"
    ).split()
    assert len(volumes) == 3, volumes

    stack.compose("up", "--detach", *BROKERS, timeout=300)
    stack.wait(lambda: all(healthy(stack, b) for b in BROKERS), 300, "3 healthy brokers again")
    stack.wait(full_isr, 120, f"{TOPIC} with a full ISR after the restart")
    again = TopicContent.read(BOOTSTRAP, TOPIC)
    assert again.keys == content.keys, "the topic's records changed across down and up"
    assert {group: committed(group) for group in GROUPS} == offsets

    restarted_at = datetime.datetime.now(datetime.UTC)
    stack.compose("up", "--detach", *live.services(), timeout=600)
    stack.wait(
        lambda: any(
            when > restarted_at and SEED_LINES["single-consumer"] in text
            for _, when, text in stack.logs("single-consumer")
        ),
        240,
        "the single consumer to process new messages after up",
    )
    (init,) = stack.containers("kafka-init")
    assert init.state["ExitCode"] == 0
    live.record(survived_records=len(content), survived_offsets=offsets)
