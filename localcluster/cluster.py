"""The local cluster as a whole: bring it up, take it down, kill a node, report its state."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from confluent_kafka.admin import AdminClient

from kafka_app import settings
from localcluster import acls, admin, compose, jars, secrets, state
from localcluster.errors import ClusterError
from localcluster.nodes import (
    DOCKER_WRAPPER,
    LOOPBACK,
    Node,
    error_lines,
    listening_ports,
    local_environment,
    localize,
    plan_ports,
    port_in_use,
)
from localcluster.portcheck import require_free

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = ROOT / ".localcluster"
SECURE_OVERRIDE = "docker-compose.secure.yml"  # `up --secure` reads it over the compose file
STARTED_LINE = "Kafka Server started"
START_OVER_HINT = "run `python -m localcluster down --wipe` first, or set another LOCALCLUSTER_HOME"
Missing = TypeVar("Missing")  # what a wait still waits for (LocalCluster._wait)


def _env_path(name: str, default: Path) -> Path:
    return Path(os.environ.get(name) or default).resolve()


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        raise ClusterError(f"{name} must be a number of seconds") from None


@dataclass
class Quorum:
    leader: int | None
    voters: list[int]
    observers: list[int]


# A JVM SIGKILLed in the middle of its shutdown's disk writes goes only once the write under way
# returns: on a loaded 2-core machine one outlived 10 s (it was flushing its logs).
SIGKILL_BOUND = 60.0
# A node restarted alone normally logs STARTED_LINE within 25 s on a loaded 2-core machine; one
# not started within this is restarted once (_restart_stalled), inside the 120 s start timeout.
STALL_BOUND = _env_seconds("LOCALCLUSTER_STALL_SECONDS", 60)


class LocalCluster:
    def __init__(self, say: Callable[[str], None] = print, secure: bool = False) -> None:
        self.compose_file = _env_path("LOCALCLUSTER_COMPOSE_FILE", ROOT / "docker-compose.yml")
        self.home = _env_path("LOCALCLUSTER_HOME", DEFAULT_HOME)
        self.cache = _env_path("LOCALCLUSTER_CACHE", ROOT / ".cache")
        remembered = state.read(self.home).get("secure", False)
        self.secure = secure or remembered or os.environ.get("LOCALCLUSTER_SECURE") == "1"
        self.model = self._load_model()
        self.security = (  # the admin's login, kafka-init's in the compose file
            settings.security_settings(self.model.init_environment) if self.secure else {}
        )
        self.nodes = [Node(broker, self.home) for broker in self.model.brokers]
        if uid_base := os.environ.get("LOCALCLUSTER_NODE_UID_BASE"):  # root only: node n runs
            for node in self.nodes:  # as uid base + n, for the fault tests' network rules
                node.uid = int(uid_base) + node.node_id
        offset = state.choose_offset(self.home, state.read(self.home), lambda: bool(self.running()))
        self.port_offset, self.offset_source = offset.value, offset.source
        if not all(0 < port < 65536 for _, port in self._external()):
            raise ClusterError(f"port offset {self.port_offset} puts {self.bootstrap} out of range")
        self.say = say
        self._started = time.monotonic()
        self._restarted: set[str] = set()  # nodes started again during this `up`

    def _load_model(self) -> compose.ComposeModel:
        if not self.secure:
            return compose.load(self.compose_file)
        secrets.generate(self.compose_file.parent / "secrets")  # the override reads them
        return compose.load(self.compose_file, self.compose_file.with_name(SECURE_OVERRIDE))

    # --- addresses ---------------------------------------------------------------------------

    def _external(self) -> list[tuple[str, int]]:
        return [
            (ad.host, ad.port + self.port_offset)
            for node in self.nodes
            for ad in node.broker.advertised()
            if ad.host in ("localhost", LOOPBACK)
        ]

    @property
    def bootstrap(self) -> str:
        """The EXTERNAL listeners: what host scripts use, with Docker or without."""
        return ",".join(f"{host}:{port}" for host, port in self._external())

    def describe(self) -> str:
        """Which cluster a command is about, so that it never reports on another one unsaid."""
        return (
            f"the local cluster in {self.home}: bootstrap {self.bootstrap},"
            f" port offset {self.port_offset} ({self.offset_source})"
        )

    def node(self, node_id: int) -> Node:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise ClusterError(f"no node {node_id}: nodes are {[n.node_id for n in self.nodes]}")

    def ports(self) -> dict[str, int]:
        """Loopback ports of every listener, remembered across runs in cluster.json with the
        port offset they were planned for."""
        known = state.read(self.home)
        if known and known.get("cluster_id") != self.model.cluster_id:
            raise ClusterError(
                f"{self.home} holds cluster {known.get('cluster_id')}, but docker-compose.yml"
                f" now says {self.model.cluster_id}: run `python -m localcluster down --wipe`"
            )
        if known and known.get("secure", False) != self.secure:
            was = "secured" if known.get("secure") else "plaintext"
            raise ClusterError(f"{self.home} holds a {was} cluster: {START_OVER_HINT}")
        ports = plan_ports(self.model.brokers, known.get("ports", {}), self.port_offset)
        now = {"cluster_id": self.model.cluster_id, "port_offset": self.port_offset, "ports": ports}
        if self.secure:
            now["secure"] = True
        if now != known:
            state.write(self.home, now)
        return ports

    def localize(self, value: str) -> str:
        """``kafka-0:9092,...`` as the local cluster serves it (used for the apps in `demo`)."""
        return localize(value, self.ports())

    def admin(self) -> AdminClient:
        """An admin client of this cluster, logged in as its admin if it is secured."""
        return admin.admin_client(self.bootstrap, self.security)

    def lib(self) -> Path:
        return jars.ensure_jars(self.cache, self.model.kafka_version, self._progress)

    # --- lifecycle ----------------------------------------------------------------------------

    def running(self) -> list[Node]:
        return [node for node in self.nodes if node.pid() is not None]

    def up(self, timeout: float | None = None) -> float:
        """Starts every node that is down, waits for the cluster and the topics; returns seconds."""
        timeout = timeout or _env_seconds("LOCALCLUSTER_START_TIMEOUT", 120)
        self._started = time.monotonic()
        ports = self.ports()
        stopped = [node for node in self.nodes if not node.alive()]
        # First, before anything slow: the nodes already up hold their own ports.
        wanted = {p: what for n in stopped for p, what in listening_ports(n.broker, ports).items()}
        external = [port for _, port in self._external()]
        require_free(wanted, external, self.port_offset, self.home, DEFAULT_HOME)
        java = jars.require_java()
        lib = self.lib()
        self._setup(java, lib, stopped, ports)

        offsets = {}
        self._restarted = set()
        for node in stopped:
            offsets[node.name] = node.log_size()
            node.start(java, lib)
        if stopped:
            self._progress(f"started {', '.join(n.name for n in stopped)}; logs in {self.home}")
        else:
            self._progress("all nodes already running")
        deadline = time.monotonic() + timeout
        self._wait_started(stopped, offsets, deadline)
        self._wait_registered(deadline, offsets)
        self._init_topics(deadline)
        self._grant_acls()
        self._wait_group_coordinator(deadline)
        elapsed = time.monotonic() - self._started
        names = " and ".join(spec.name for spec in self.model.topics)
        self._progress(f"cluster up, {names} ready, bootstrap {self.bootstrap}")
        return elapsed

    def _wait_ports_free(self, nodes: list[Node]) -> None:
        """A SIGKILLed JVM's main thread can be a zombie, which pid() counts as gone, while its
        other threads still hold its sockets (seen under load): `up` right after needs them."""
        ports = self.ports()
        held = [port for node in nodes for port in listening_ports(node.broker, ports)]
        deadline = time.monotonic() + SIGKILL_BOUND
        while busy := [port for port in held if port_in_use(port)]:
            if time.monotonic() > deadline:
                raise ClusterError(f"ports {busy} still held {SIGKILL_BOUND:.0f}s after the stop")
            time.sleep(0.1)

    def down(self, wipe: bool = False, timeout: float | None = None) -> None:
        """SIGTERM every node, SIGKILL what is left after the bound; optionally delete the data."""
        timeout = timeout or _env_seconds("LOCALCLUSTER_STOP_TIMEOUT", 30)
        running = [node for node in self.nodes if node.signal(signal.SIGTERM)]
        deadline = time.monotonic() + timeout
        for node in running:
            if not node.wait_gone(max(0.0, deadline - time.monotonic())):
                self.say(f"{node.name} did not stop within {timeout:.0f}s: sending SIGKILL")
                node.signal(signal.SIGKILL)
                if not node.wait_gone(SIGKILL_BOUND):
                    raise ClusterError(f"{node.name} (pid {node.pid()}) survived SIGKILL")
        if running:
            self._wait_ports_free(running)
            self.say(f"stopped {', '.join(n.name for n in running)}")
        if wipe and self.home.exists():
            shutil.rmtree(self.home)
            self.say(f"deleted {self.home}")

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would, and wait until it is gone."""
        node = self.node(node_id)
        if not node.signal(signal.SIGKILL):
            raise ClusterError(f"{node.name} is not running")
        if not node.wait_gone(SIGKILL_BOUND):
            raise ClusterError(f"{node.name} survived SIGKILL")

    # --- waiting ------------------------------------------------------------------------------

    def _progress(self, message: str) -> None:
        self.say(f"[{time.monotonic() - self._started:5.1f}s] {message}")

    def _setup(self, java: str, lib: Path, nodes: list[Node], ports: dict[str, int]) -> None:
        """server.properties from the compose environment, and the storage formatted if new, by
        Kafka's KafkaDockerWrapper as in the image (nodes.py); in parallel, one JVM per node.

        A node whose last setup had the same jars and environment, and whose server.properties
        and storage are as that setup left them, is skipped: its JVM would change nothing, and
        three of them add seconds to every restart on a 2-core machine.
        """
        pending = []
        for node in nodes:
            environment = local_environment(node.broker, ports, node.data_dir)
            if not node.setup_current(lib, environment):
                pending.append((node, environment))
        if not pending:
            return
        names = ", ".join(node.name for node, _ in pending)
        self._progress(f"{DOCKER_WRAPPER} setup of {names} (server.properties, storage)")
        runs = [(node, env, node.begin_setup(java, lib, env)) for node, env in pending]
        try:
            for node, environment, run in runs:
                node.finish_setup(run, lib, environment)
        finally:
            for _, _, run in runs:
                if run.poll() is None:
                    run.kill()
                    run.wait()

    def _check_alive(self, nodes: list[Node], offsets: dict[str, int]) -> None:
        """A node that exits during start-up is started once more, as docker-compose's
        `restart: unless-stopped` would; if it exits again, its log says why.

        (On a loaded 2-core machine, a broker once exited about a minute into a full cluster
        restart, its log full of NotControllerException while the quorum settled; Kafka gives
        a broker initial.broker.registration.timeout.ms, 60 s, to register. A wrong setting
        fails both times.)
        """
        for node in nodes:
            if node.alive():
                continue
            excerpt = node.log_excerpt(offsets.get(node.name, 0))
            if node.name in self._restarted:
                raise ClusterError(
                    f"{node.name} exited during start-up, twice. From {node.log_file}:\n{excerpt}"
                )
            self._start_again(node, offsets, "exited during start-up", excerpt)

    def _restart_stalled(self, waiting: list[Node], offsets: dict[str, int], began: float) -> None:
        """A lone node still not started STALL_BOUND s after its start, while the rest of the
        cluster serves, is killed and started once more, as an orchestrator's liveness probe
        would. (In one CI run, a broker restarted during chaos stayed up 116 s without starting,
        its log ending in an error handling CONTROLLER_REGISTRATION.) Nodes starting together
        wait for each other, so they are given the whole timeout."""
        if len(waiting) != 1 or len(self.running()) < len(self.nodes):
            return
        node = waiting[0]
        if time.monotonic() - began < STALL_BOUND or node.name in self._restarted:
            return
        node.signal(signal.SIGKILL)
        if not node.wait_gone(SIGKILL_BOUND):
            raise ClusterError(f"{node.name} survived SIGKILL")
        self._wait_ports_free([node])
        excerpt = node.log_excerpt(offsets[node.name])
        self._start_again(node, offsets, f"not started after {STALL_BOUND:.0f} s", excerpt)

    def _start_again(self, node: Node, offsets: dict[str, int], why: str, excerpt: str) -> None:
        last_error = next(reversed(error_lines(excerpt.splitlines())), "no error logged")[:200]
        self._progress(f"{node.name} {why} ({last_error}); starting it again")
        self._restarted.add(node.name)
        offsets[node.name] = node.log_size()
        node.start_again()

    def _timeout(self, what: str, nodes: list[Node]) -> ClusterError:
        tails = "\n".join(f"--- {n.name} ({n.log_file}):\n{n.log_excerpt(lines=8)}" for n in nodes)
        return ClusterError(f"timed out waiting for {what}\n{tails}")

    def _wait(
        self,
        missing: Callable[[], Missing | None],
        deadline: float,
        progress: Callable[[Missing], str],
        timed_out: Callable[[Missing], ClusterError],
    ) -> None:
        """Asks `missing` every 0.2 s until it answers None: done. Until then its answer (what
        is still missing, or why) makes the progress line said every 5 s or so, and once past
        the deadline the error raised."""
        last_report = 0.0
        while (what := missing()) is not None:
            if time.monotonic() > deadline:
                raise timed_out(what)
            if time.monotonic() - last_report > 5:
                self._progress(progress(what))
                last_report = time.monotonic()
            time.sleep(0.2)

    def _wait_started(self, nodes: list[Node], offsets: dict[str, int], deadline: float) -> None:
        waiting, began = list(nodes), time.monotonic()

        def not_started() -> list[Node] | None:
            nonlocal waiting
            self._check_alive(nodes, offsets)
            waiting = [n for n in waiting if not n.log_contains(STARTED_LINE, offsets[n.name])]
            self._restart_stalled(waiting, offsets, began)
            return waiting or None

        self._wait(
            not_started,
            deadline,
            lambda late: f"waiting for {', '.join(n.name for n in late)} to start",
            lambda late: self._timeout("nodes to start", late),
        )

    def _wait_registered(self, deadline: float, offsets: dict[str, int]) -> None:
        """All brokers registered with the active controller, so the quorum has a leader."""
        expected = [n.node_id for n in self.nodes]
        client = self.admin()

        def unregistered() -> str | None:
            self._check_alive(self.nodes, offsets)
            try:
                brokers = admin.registered_brokers(client, timeout=3)
                reason = f"registered brokers {brokers}"
            except Exception as exc:
                brokers, reason = [], admin.wait_error(exc)
            return None if brokers == expected else reason

        self._wait(
            unregistered,
            deadline,
            lambda reason: f"waiting for brokers {expected}: {reason}",
            lambda reason: self._timeout(f"brokers {expected} to register ({reason})", self.nodes),
        )
        self._progress(f"brokers {expected} registered")

    def _init_topics(self, deadline: float) -> None:
        """What the compose kafka-init service does (the topic and its dead-letter topic), then
        wait for leaders and a full ISR."""
        specs = self.model.topics
        client = self.admin()
        created: set[str] = set()

        def not_ready() -> str | None:
            try:
                created.update(admin.ensure_topics(client, specs))
                lagging = {}
                for spec in specs:
                    parts = admin.topic_partitions(client, spec.name)
                    # A ClusterError: wrong shape or config, no use waiting.
                    admin.require_shape(parts, spec)
                    admin.require_config(admin.topic_config(client, spec.name), spec)
                    lagging[spec.name] = [p.partition for p in parts if not p.healthy]
            except ClusterError:
                raise
            except Exception as exc:
                return admin.wait_error(exc)
            lagging = {name: partitions for name, partitions in lagging.items() if partitions}
            return f"partitions without a leader or full ISR: {lagging}" if lagging else None

        names = " and ".join(spec.name for spec in specs)
        self._wait(
            not_ready,
            deadline,
            lambda reason: f"waiting for topics {names}: {reason}",
            lambda reason: self._timeout(f"topics {names} ({reason})", self.nodes),
        )
        for spec in specs:
            verb = "created" if spec.name in created else "exists"
            shape = f"{spec.partitions} partitions, RF {spec.replication_factor}"
            configs = "".join(f", {name}={value}" for name, value in spec.config.items())
            self._progress(f"topic {spec.name} {verb}: {shape}{configs}, full ISR")

    def _grant_acls(self) -> None:
        """The secured profile's ACLs, as kafka-init grants them (ACLS_FILE)."""
        if path := self.model.init_environment.get("ACLS_FILE"):
            bindings = acls.load(Path(path))
            admin.create_acls(self.admin(), bindings)
            self._progress(f"{len(bindings)} ACLs of {Path(path).name} granted")

    def _wait_group_coordinator(self, deadline: float) -> None:
        """Consumer groups work: the first request creates __consumer_offsets (50 partitions)."""

        def unavailable() -> str | None:
            try:
                topic = self.model.topic.name
                admin.committed_offsets(
                    self.bootstrap, "localcluster-probe", topic, security=self.security
                )
            except Exception as exc:
                return admin.wait_error(exc)
            return None

        self._wait(
            unavailable,
            deadline,
            lambda reason: f"waiting for the group coordinator: {reason}",
            lambda reason: self._timeout(f"the group coordinator ({reason})", self.nodes),
        )
        self._progress("group coordinator ready")

    # --- status -------------------------------------------------------------------------------

    def tool_login(self) -> list[str]:
        """``--command-config`` for Kafka's Java tools on the secured cluster: the admin's login,
        in a private file of the cluster's home (a password has no place on a command line)."""
        if not self.secure:
            return []
        settings = {
            "security.protocol": self.security["security.protocol"],
            "sasl.mechanism": self.security["sasl.mechanism"],
            "sasl.jaas.config": secrets.jaas(
                self.security["sasl.username"], self.security["sasl.password"]
            ),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": self.security["ssl.ca.location"],
        }
        path = self.home / "admin-tools.properties"
        self.home.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.writelines(f"{key}={value}\n" for key, value in settings.items())
        return ["--command-config", str(path)]

    def quorum(self, timeout: float = 60) -> Quorum:
        """The controller quorum, from Kafka's own MetadataQuorumCommand, within `timeout` s."""
        command = [
            jars.require_java(), "-cp", f"{self.lib()}/*",
            f"-Dlog4j2.configurationFile={Path(__file__).with_name('log4j2.xml')}",
            "org.apache.kafka.tools.MetadataQuorumCommand",
            "--bootstrap-server", self.bootstrap, *self.tool_login(), "describe", "--status",
        ]  # fmt: skip
        try:
            run = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise ClusterError(
                f"MetadataQuorumCommand did not answer within {timeout:g} s"
            ) from None
        if run.returncode != 0:
            raise ClusterError(f"MetadataQuorumCommand failed: {run.stderr.strip()[-500:]}")
        fields = dict(line.split(":", 1) for line in run.stdout.splitlines() if ":" in line)
        leader = fields.get("LeaderId", "").strip()

        def ids(key: str) -> list[int]:
            return sorted(int(i) for i in re.findall(r'"id":\s*(\d+)', fields.get(key, "")))

        return Quorum(
            leader=int(leader) if leader.lstrip("-").isdigit() and int(leader) >= 0 else None,
            voters=ids("CurrentVoters"),
            observers=ids("CurrentObservers"),
        )
