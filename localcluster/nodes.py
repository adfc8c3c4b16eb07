"""One Kafka node as a local JVM: its server.properties, its process, its log.

Processes are found by a marker in their command line (``-Dlocalcluster.node=<dir>``), not by pid
files, so a node killed with SIGKILL or started by another shell is still seen correctly.

A node's server.properties is written, and its storage formatted, by the official apache/kafka
image's own start-up code, Kafka's ``kafka.docker.KafkaDockerWrapper setup`` (in
kafka_2.13-<version>.jar), run on the node's compose environment with the Docker addresses mapped
to loopback first (see local_environment). Docker users, a stand-in image and this cluster so get
their properties from the same code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from localcluster.compose import BrokerService, host_paths
from localcluster.errors import ClusterError

LOOPBACK = "127.0.0.1"
MARKER = "-Dlocalcluster.node="
LOG4J_CONFIG = Path(__file__).with_name("log4j2.xml")
# Internal and controller ports come from this range: outside Linux's ephemeral range, so that no
# client connection can borrow a stopped broker's port before it comes back.
PORT_RANGE = range(19000, 29000)
# The image's start-up code: KAFKA_* variables -> server.properties, then storage formatting.
DOCKER_WRAPPER = "kafka.docker.KafkaDockerWrapper"
# What the wrapper's formatting says about a formatted log directory; the image's start-up
# script looks for it too and carries on, the storage being kept.
ALREADY_FORMATTED = "already formatted"
SETUP_TIMEOUT = 120.0


# A record of log4j2.xml's pattern "[%d] %p %m (%c)%n" starts with its date; other lines are
# the rest of a multi-line message: an exception, its "Caused by", its stack frames.
_RECORD_START = re.compile(r"^\[\d{4}-\d\d-\d\d ")
_ERROR_RECORD = re.compile(r"^\[[^]]*\] (ERROR|FATAL) ")


def error_lines(lines: list[str]) -> list[str]:
    """ERROR and FATAL records with their exception and "Caused by" lines, stack frames left out.

    (Matching "Exception" anywhere would pick INFO records that merely mention one: a busy
    broker logs enough of those, NotControllerException while the quorum forms, to crowd out
    the real cause.)
    """
    picked: list[str] = []
    in_error = False
    for line in lines:
        if _RECORD_START.match(line):
            in_error = bool(_ERROR_RECORD.match(line))
            if in_error:
                picked.append(line)
        elif in_error and line.strip() and not line.lstrip().startswith(("at ", "... ")):
            picked.append(line)
    return picked


@dataclass
class Node:
    broker: BrokerService
    home: Path
    # Set when this process started the JVM: between fork and exec its command line has no marker.
    process: subprocess.Popen | None = field(default=None, repr=False)
    # The command of the last start() from this process, for start_again().
    command: list[str] = field(default_factory=list, repr=False)
    # Run the JVM as this uid (and gid): network rules can then tell the nodes apart by the
    # owner of a packet's socket, though all of them talk over loopback (tests/support/nemesis).
    uid: int | None = None
    # Between begin_setup() and finish_setup(): whether the storage was new, and the JVM.
    _new_storage: bool = field(default=False, repr=False)
    _java: str = field(default="java", repr=False)

    @property
    def name(self) -> str:
        return self.broker.service

    @property
    def node_id(self) -> int:
        return self.broker.node_id

    @property
    def dir(self) -> Path:
        return self.home / self.name

    @property
    def config_dir(self) -> Path:
        """The wrapper's final configs folder, as /opt/kafka/config is in the image."""
        return self.dir / "config"

    @property
    def properties_file(self) -> Path:
        return self.config_dir / "server.properties"

    @property
    def setup_record(self) -> Path:
        """What the last successful setup ran with, to skip an unchanged one on restart."""
        return self.config_dir / "localcluster-setup.json"

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.pid() is not None

    def pid(self) -> int | None:
        """The pid of this node's live JVM, if any (zombies count as dead)."""
        needle = (MARKER + str(self.dir)).encode() + b"\0"
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if needle in f.read():
                        return int(entry.name)
            except OSError:
                continue
        return None

    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").exists()

    def log_excerpt(self, offset: int = 0, lines: int = 12) -> str:
        """The last errors logged since ``offset``, then the last lines.

        The last errors, not the first: a node that dies logs its fatal error last, and a
        busy quorum may log many harmless ERROR records (NotControllerException) before it.
        """
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        all_lines = text.rstrip().splitlines()
        tail = all_lines[-(lines // 2) :]
        picked = [line for line in error_lines(all_lines)[-(lines // 2) :] if line not in tail]
        return "\n".join([*picked, *(["..."] if picked else []), *tail])

    def log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def log_contains(self, text: str, offset: int) -> bool:
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                return text.encode() in f.read()
        except FileNotFoundError:
            return False

    # --- server.properties and storage: KafkaDockerWrapper ------------------------------------

    def _setup_inputs(self, lib: Path, environment: dict[str, str]) -> dict:
        written = self.properties_file.read_bytes() if self.properties_file.exists() else b""
        # The environment's digest, not its values: the secured profile's hold a password.
        variables = json.dumps(environment, sort_keys=True).encode()
        return {
            "classpath": str(lib),
            "environment sha256": hashlib.sha256(variables).hexdigest(),
            "server.properties sha256": hashlib.sha256(written).hexdigest(),
        }

    def setup_current(self, lib: Path, environment: dict[str, str]) -> bool:
        """Whether the last setup ran with these jars and this environment, its server.properties
        is as it wrote it, and the storage is formatted: then running it again would change
        nothing (its format step would only find the storage formatted)."""
        try:
            record = json.loads(self.setup_record.read_text())
        except (FileNotFoundError, ValueError):
            return False
        return self.formatted() and record == self._setup_inputs(lib, environment)

    def begin_setup(self, java: str, lib: Path, environment: dict[str, str]) -> subprocess.Popen:
        """Starts ``KafkaDockerWrapper setup`` on the node's local environment.

        It writes config/server.properties (and log4j2 files that localcluster does not use: the
        brokers log with log4j2.xml) and formats the storage with CLUSTER_ID. No default or
        mounted config files are given: once any KAFKA_* property is set, the image does not use
        its default server.properties either.
        """
        self._new_storage = not self.formatted()  # the secured profile formats it again
        self._java = java
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.config_dir.chmod(0o700)  # server.properties may hold the brokers' password
        self.setup_record.unlink(missing_ok=True)
        self.properties_file.unlink(missing_ok=True)  # so that a file found after it is its own
        no_files = self.dir / "no-configs"  # an empty folder, as /mnt/shared/config in the image
        no_files.mkdir(exist_ok=True)
        command = self.jvm_command(
            java, lib, DOCKER_WRAPPER, "setup",
            "--default-configs-dir", str(no_files),
            "--mounted-configs-dir", str(no_files),
            "--final-configs-dir", str(self.config_dir),
        )  # fmt: skip
        return subprocess.Popen(
            command,
            env=container_environment(environment),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def format_with_scram(self, java: str, lib: Path, environment: dict[str, str]) -> None:
        """A new node's format again, with the SCRAM users of the argument file that
        SCRAM_FORMAT_ARGS names (localcluster/secrets.py), so that the brokers and the apps can
        log in from the first start (KIP-900). The wrapper formats without them; a node that
        never ran has only the files the format wrote. The passwords stay in the file: java
        reads ``@file`` itself, so no command line holds them."""
        for name in ("meta.properties", "bootstrap.checkpoint"):
            (self.data_dir / name).unlink(missing_ok=True)
        args = environment["SCRAM_FORMAT_ARGS"]
        cluster = ["--cluster-id", environment["CLUSTER_ID"], "-c", str(self.properties_file)]
        command = self.jvm_command(java, lib, f"@{args}", *cluster)
        run = subprocess.run(command, capture_output=True, text=True, timeout=SETUP_TIMEOUT)
        if run.returncode != 0:
            why = last_error_line(run.stderr or run.stdout)
            raise ClusterError(f"{self.name}: format with SCRAM users failed: {why}")

    def finish_setup(self, run: subprocess.Popen, lib: Path, environment: dict[str, str]) -> None:
        """Waits for the setup; ClusterError with the wrapper's error line if it failed.

        A storage already formatted is not a failure: the properties are written before the
        format step, and the image's start-up script lets the same message pass. (It looks in
        all the output; here only the error output counts, where the wrapper prints it, not the
        INFO records of a failed run.)
        """
        try:
            out, err = run.communicate(timeout=SETUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()
            raise ClusterError(
                f"{self.name}: {DOCKER_WRAPPER} setup did not finish in {SETUP_TIMEOUT:.0f}s"
            ) from None
        (self.config_dir / "setup.log").write_text(out + err)
        if run.returncode != 0 and ALREADY_FORMATTED not in err.lower():
            raise ClusterError(
                f"{self.name}: {DOCKER_WRAPPER} setup failed: {last_error_line(err or out)}"
            )
        if not self.properties_file.exists():
            raise ClusterError(f"{self.name}: {DOCKER_WRAPPER} setup wrote no server.properties")
        self.properties_file.chmod(0o600)  # the secured profile's holds the brokers' password
        if self._new_storage and "SCRAM_FORMAT_ARGS" in environment:
            self.format_with_scram(self._java, lib, environment)
        self.setup_record.write_text(
            json.dumps(self._setup_inputs(lib, environment), indent=2, sort_keys=True)
        )

    def jvm_command(self, java: str, lib: Path, main: str, *args: str) -> list[str]:
        log4j = LOG4J_CONFIG
        if self.uid is not None:  # log4j checks its file with access(2), which ignores the
            log4j = self.dir / LOG4J_CONFIG.name  # node's capabilities: a copy it may read
            self.dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(LOG4J_CONFIG, log4j)
        return [
            java,
            *self.broker.heap_opts,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.dir}",
            MARKER + str(self.dir),
            "-cp",
            f"{lib}/*",
            main,
            *args,
        ]

    def start(self, java: str, lib: Path) -> None:
        self.command = self.jvm_command(java, lib, "kafka.Kafka", str(self.properties_file))
        self.start_again()

    def start_again(self) -> None:
        """Runs the command of the last start() once more (a restart after a crash)."""
        if self.uid is not None:  # Kafka checks its folders with access(2), which ignores
            for path in [self.dir, *self.dir.rglob("*")]:  # capabilities: they must be its own
                os.chown(path, self.uid, self.uid, follow_symlinks=False)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                as_uid(self.uid) + self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the caller's terminal must not reach it.
                close_fds=True,
            )

    def signal(self, sig: signal.Signals) -> bool:
        pid = self.process.pid if self.process and self.process.poll() is None else self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


def as_uid(uid: int | None) -> list[str]:
    """The prefix that runs a command as ``uid`` (root only), still free to read and write any
    file as root is: the uid only tells its sockets apart, for network rules on the owner of a
    packet's socket (tests/support/nemesis.py)."""
    if uid is None:
        return []
    caps = ["--inh-caps", "+dac_override", "--ambient-caps", "+dac_override"]
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *caps]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def allocate_port(taken: set[int]) -> int:
    """A free loopback port from PORT_RANGE not already given to another listener."""
    start = PORT_RANGE.start + os.getpid() % len(PORT_RANGE)
    for i in range(len(PORT_RANGE)):
        port = PORT_RANGE.start + (start - PORT_RANGE.start + i) % len(PORT_RANGE)
        if port not in taken and not port_in_use(port):
            taken.add(port)
            return port
    raise ClusterError(f"no free loopback port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def plan_ports(
    brokers: list[BrokerService], known: dict[str, int], offset: int = 0
) -> dict[str, int]:
    """Maps every ``hostname:container_port`` a broker listens on to a loopback port.

    Listeners advertised as localhost (EXTERNAL) keep their port, so host scripts use the same
    bootstrap servers with or without Docker; the internal and controller listeners, which in
    Docker all share 9092/9093 on different hosts, get free loopback ports, remembered in
    ``known`` so that a restarted node comes back where its peers expect it. A non-zero
    ``offset`` shifts the EXTERNAL ports, to run a second cluster beside the first.
    """
    ports: dict[str, int] = {}
    taken = set(known.values())
    for broker in brokers:
        local = ("localhost", LOOPBACK)
        public = {ad.name: ad.port for ad in broker.advertised() if ad.host in local}
        for listener in broker.listeners():
            key = f"{broker.hostname}:{listener.port}"
            if listener.name in public:
                ports[key] = public[listener.name] + offset
                if offset:
                    ports[f"localhost:{public[listener.name]}"] = public[listener.name] + offset
            else:
                ports[key] = known.get(key) or allocate_port(taken)
    return ports


def localize(value: str, ports: dict[str, int]) -> str:
    """Rewrites ``kafka-N:9092`` style addresses to the loopback ports that stand for them."""

    def replace(match: re.Match[str]) -> str:
        port = ports.get(match[0])
        # A name stays a name: TLS clients check it against the certificate (localhost).
        host = "localhost" if match[0].startswith("localhost:") else LOOPBACK
        return f"{host}:{port}" if port else match[0]

    return re.sub(r"[A-Za-z0-9][A-Za-z0-9.-]*:\d+", replace, value)


def local_environment(
    broker: BrokerService, ports: dict[str, int], data_dir: Path
) -> dict[str, str]:
    """The broker's compose environment, with its Docker addresses mapped to loopback.

    The mapping is applied to the environment, before KafkaDockerWrapper, not to the properties
    after it: the wrapper formats the storage as soon as it has written them, so log.dirs must
    already be the node's data folder, and the file it writes is then the one the broker runs
    with, untouched. Three rewrites, all of values (no variable is renamed or added but
    KAFKA_LOG_DIRS):
    - KAFKA_LISTENERS binds each listener to its loopback port (in Docker the brokers all listen
      on 9092 and 9093, on different hosts);
    - every other value naming a listener as ``hostname:port`` (the advertised listeners, the
      quorum voters) names that loopback port instead;
    - KAFKA_LOG_DIRS is the node's data folder, not the container's volume;
    - a path inside a bind mount (the secured profile's /etc/kafka/secrets) is the host's.
    """
    environment = {
        key: host_paths(localize(value, ports), broker.mounts)
        for key, value in broker.environment.items()
    }
    environment["KAFKA_LISTENERS"] = ",".join(
        f"{item.name}://{LOOPBACK}:{ports[f'{broker.hostname}:{item.port}']}"
        for item in broker.listeners()
    )
    environment["KAFKA_LOG_DIRS"] = str(data_dir)
    return environment


def container_environment(environment: dict[str, str]) -> dict[str, str]:
    """The wrapper's process environment: this process's without its KAFKA_* variables and
    CLUSTER_ID, plus the service's. A container does not see the host's variables; here a
    KAFKA_BOOTSTRAP_SERVERS exported for the apps would otherwise become a broker property."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KAFKA_") and key != "CLUSTER_ID"
    }
    return {**inherited, **environment}


def last_error_line(output: str) -> str:
    """The last line of a JVM's error output that is not a stack frame: the (root) cause."""
    lines = [
        line.strip()
        for line in output.splitlines()
        if line.strip() and not line.lstrip().startswith(("at ", "... "))
    ]
    return lines[-1].removeprefix('Exception in thread "main" ') if lines else "(no output)"


def listening_ports(broker: BrokerService, ports: dict[str, int]) -> dict[int, str]:
    return {
        ports[f"{broker.hostname}:{item.port}"]: f"{broker.service} {item.name}"
        for item in broker.listeners()
    }
