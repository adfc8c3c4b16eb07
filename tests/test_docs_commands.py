"""Every command the docs show works as written, in a shell where the venv is active.

Where the commands come from, read at test time (never copied here): README.md's fenced
```bash blocks, topic.txt's command lines (not comments; a line ending in a backslash goes on
to the next one), and the ``python ...`` examples in each script's ``--help``. A command that
appears twice (comments aside) runs once, where it first appears.

How they run: each verbatim with ``bash -c``, from the repo root, with .venv's bin first on
PATH and VIRTUAL_ENV set (what ``source .venv/bin/activate`` does) and KAFKA_BOOTSTRAP_SERVERS
set to the session's cluster. A command passes if it exits 0, prints no error line, and shows
what it is for (:data:`SHOWS`, :data:`FIRST_LINE`). A script that runs until Ctrl-C (no
--count, --max-messages or --idle-exit) passes when its first expected line appears and it
then exits 0 on SIGINT, sent to its process group as a terminal's Ctrl-C is. Commands that
need Docker or would disturb the session are not run; :data:`EXCLUDED` says which and why, and
a command that is neither run nor excluded fails the test.

Order and shared state: the commands run one at a time, in the order of the docs (README.md,
topic.txt, then --help), each finished, or stopped and out of its group, before the next one
starts. So when topic.txt resets batch-group, the group has no active member, as the reset
requires. The reset only moves batch-group's committed offsets to the start of final-1-topic on
the session's cluster; what reads batch-group afterwards (the docs' next command, a later test)
reads those messages again, as an at-least-once consumer may. Before each command that runs a
consumer the test produces 10 messages, as the demo's producers would have, so the consumer
has something to receive wherever its group stands. The dead-letter topic gets one dead letter
first, written by kafka_app.dead_letters as the consumers write theirs, so that reading it shows
one. On a cluster left running by a developer (`make up`), nothing else may be consuming
batch-group meanwhile: the reset would fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from kafka_app import attempts, dead_letters
from support.processes import ROOT, app_env, run_script
from support.waits import wait_until

pytestmark = pytest.mark.cluster

VENV = ROOT / ".venv"
SCRIPTS = ("producer.py", "batch_message_consumer.py", "single_message_consumer.py")
CONSUMERS = SCRIPTS[1:]

# Documented commands not run here, each with its reason: (regular expression, reason).
EXCLUDED: tuple[tuple[str, str], ...] = (
    (r"^docker\b", "needs a Docker engine; tests/compose_live runs the compose stack for real"),
    (
        r"^make (up|venv)\b",
        "make reinstalls .venv with pip when a requirements file is newer than it; the session"
        " fixture has already done what `make up` does (python -m localcluster up), and the"
        " commands run in that venv",
    ),
    (
        r"^make demo\b",
        "runs every app service until Ctrl-C and stops the cluster after; tests/test_demo.py"
        " runs it",
    ),
    (
        r"^make (test|test-faults|test-compose|bench)\b",
        "runs the whole suite (this test too) or the benchmarks, for many minutes",
    ),
    (
        r"\bSECURE=1\b|--secure\b",
        "the secured cluster would take the session's ports; tests/test_secure.py runs one of its"
        " own",
    ),
    (
        r"^python -m localcluster user\b",
        "needs the secured cluster; tests/test_secure.py adds a user with its ACLs, and rotates"
        " its password while it writes",
    ),
    (
        r"^make (down|clean)\b|^python -m localcluster down\b",
        "would stop the session's cluster under the tests that follow",
    ),
)

# What a run of each script prints first that shows it works (the seed's log lines).
FIRST_LINE = {
    "producer.py": "INFO:root:Message delivered to final-1-topic [",
    "batch_message_consumer.py": "INFO:root:BatchConsumer received: Test message ",
    "single_message_consumer.py": "INFO:root:SingleConsumer received: Test message ",
}
BOUNDS = {"--count", "--max-messages", "--idle-exit", "--help", "-h"}

TOPIC, DEAD_LETTER_TOPIC = "final-1-topic", "final-1-topic.dlq"

# What other commands must print, so that an exit status of 0 is not the only evidence:
# (regular expression on the command, on its output, what the output shows).
SHOWS: tuple[tuple[str, str, str], ...] = (
    (
        r"\bConsoleConsumer\b.* --topic final-1-topic( |$)",
        r"(?m)^Partition:\d+\tOffset:\d+\t\S+\t\S",
        "the partition, offset, key and value of a message",
    ),
    (  # headers hold spaces (the exception's message): a tab ends them
        r"\bConsoleConsumer\b.* --topic final-1-topic\.dlq\b.*\bprint\.headers=true\b",
        r"(?m)^Partition:\d+\tOffset:\d+\t(?=[^\t]*\bkafka_dlt-original-topic:final-1-topic,)"
        r"(?=[^\t]*\bkafka_dlt-exception-message:)[^\t]+\t\S+\t\S",
        "the partition, offset, headers, key and value of a dead letter",
    ),
    (
        r"--reset-offsets\b.*--execute\b",
        r"(?ms)NEW-OFFSET$.*^\S+\s+final-1-topic\s+\d+\s+\d+$",
        "the new committed offset of each partition",
    ),
    (
        r"\bConsumerGroupCommand\b.*--describe --group \S+$",
        r"(?m)^\S+\s+final-1-topic\s+\d+\s+\d+\s+\d+\s+\d+\s",
        "a committed offset, end offset and lag per partition",
    ),
    (r"\bTopicCommand\b.*--describe\b", r"PartitionCount: 3\s", "the topic's 3 partitions"),
    (
        r"\bTopicCommand\b.*--describe --topic final-1-topic\.dlq\b",
        r"(?m)^Topic: final-1-topic\.dlq\t.*\bretention\.ms=2592000000\b",
        "the dead-letter topic's 30-day retention",
    ),
    (r"\bpython -m localcluster status\b", r"Consumer groups", "the status down to the groups"),
    (
        r"--metrics-port\b.*\bcurl\b",
        r'(?m)^kafka_consumer_lag\{partition="\d",topic="final-1-topic"\} \d+\.0$',
        "the consumer's lag per partition, scraped",
    ),
)

# A line that says a command failed, whatever its exit status: ConsumerGroupCommand exits 0
# after "Error: ...", and the scripts log ERROR or CRITICAL for what must not happen.
FAILURE_LINE = re.compile(
    r"(?m)^(Error\b|ERROR\b|CRITICAL\b|Exception in thread\b|Traceback \(most recent call last\))"
)
OTHER_SHELLS = {"sh", "shell", "console", "zsh", "shell-session"}  # fences that must be bash

BOUNDED_TIMEOUT = 120  # seconds for a command that ends by itself
FIRST_LINE_TIMEOUT = 90  # seconds for a long-running script's first expected line
SIGINT_TIMEOUT = 60  # seconds to exit after Ctrl-C


@dataclass
class Documented:
    """One command as the docs show it, and every place that shows it."""

    command: str
    where: list[str] = field(default_factory=list)


def command_lines(lines: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """(first line number, command) of shell lines: no blank or comment lines, and a line
    ending in a backslash joined with the next, the backslash-newline kept (bash reads it)."""
    commands: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in lines:
        if pending is None and (not line.strip() or line.lstrip().startswith("#")):
            continue
        start, text = pending if pending else (number, "")
        text += line
        if line.endswith("\\"):
            pending = (start, text + "\n")
        else:
            pending = None
            commands.append((start, text.strip()))
    if pending:
        raise AssertionError(f"line {pending[0]}: a continuation with no line after it")
    return commands


def readme_commands(text: str, name: str = "README.md") -> list[tuple[str, str]]:
    """(where, command) of every command in the fenced ```bash blocks."""
    found: list[tuple[str, str]] = []
    block: list[tuple[int, str]] | None = None
    language = ""
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```\s*([\w-]*)\s*$", line)
        if fence and block is None:
            language, block = fence.group(1).lower(), []
            if language in OTHER_SHELLS:
                raise AssertionError(
                    f"{name}:{number}: a ```{language} block; write ```bash so that"
                    " tests/test_docs_commands.py runs its commands"
                )
        elif fence:
            if language == "bash":
                found += [(f"{name}:{n}", c) for n, c in command_lines(block or [])]
            block = None
        elif block is not None:
            block.append((number, line))
    if block is not None:
        raise AssertionError(f"{name}: a fenced block is never closed")
    return found


def topic_commands(text: str, name: str = "topic.txt") -> list[tuple[str, str]]:
    """(where, command) of every command line of topic.txt."""
    lines = enumerate(text.splitlines(), 1)
    return [(f"{name}:{n}", command) for n, command in command_lines(lines)]


def help_commands(script: str, help_text: str) -> list[tuple[str, str]]:
    """(where, command) of the ``python ...`` examples in a script's --help."""
    examples = re.findall(r"``(python\s[^`]+)``", help_text)
    return [(f"{script} --help", " ".join(example.split())) for example in examples]


def script_help(script: str) -> str:
    result = subprocess.run(
        [VENV / "bin" / "python", script, "--help"],
        cwd=ROOT,
        env=activated_env(""),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, f"{script} --help failed:\n{result.stderr}"
    return result.stdout


def documented_commands() -> list[Documented]:
    """Every documented command, in the order of the docs, each once."""
    found = readme_commands((ROOT / "README.md").read_text())
    found += topic_commands((ROOT / "topic.txt").read_text())
    for script in SCRIPTS:
        found += help_commands(script, script_help(script))
    commands: dict[str, Documented] = {}  # by the command without its comments
    for where, command in found:
        commands.setdefault(flat(command), Documented(command)).where.append(where)
    return list(commands.values())


def words(command: str) -> list[str]:
    """The command's words as bash splits them, without comments or line continuations."""
    return shlex.split(command.replace("\\\n", " "), comments=True)


def flat(command: str) -> str:
    return " ".join(words(command))


def exclusion(command: str) -> str | None:
    """Why the command is not run here, or None if it is."""
    return next((why for pattern, why in EXCLUDED if re.search(pattern, flat(command))), None)


def script_of(command: str) -> str | None:
    """The project's script a ``python <script>`` command runs, if any."""
    argv = words(command)
    return argv[1] if len(argv) > 1 and argv[0] == "python" and argv[1] in SCRIPTS else None


def runs_until_stopped(command: str) -> bool:
    """A script run with nothing that ends it: it runs until Ctrl-C."""
    return script_of(command) is not None and not BOUNDS & {
        w.split("=", 1)[0] for w in words(command)
    }


def expected_output(command: str) -> list[tuple[str, str]]:
    """(regular expression, what it shows) that the command's output must match."""
    script = script_of(command)
    expected = [(re.escape(FIRST_LINE[script]), "its first expected line")] if script else []
    if "--help" in words(command):
        expected = []
    return expected + [
        (output, shows) for pattern, output, shows in SHOWS if re.search(pattern, flat(command))
    ]


def activated_env(bootstrap: str) -> dict[str, str]:
    """The app-setting-free environment with .venv activated, on the cluster `bootstrap`."""
    env = app_env(bootstrap or None)
    env.pop("PYTHONHOME", None)
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def unaccounted(commands: Iterable[Documented], outcomes: dict[str, str]) -> list[str]:
    """The documented commands that were neither run nor excluded."""
    return [c.command for c in commands if c.command not in outcomes]


class Runner:
    """Runs documented commands in the activated environment, logging each to `logs`."""

    def __init__(self, bootstrap: str, logs: Path, before_consumer: Callable[[], None]) -> None:
        self.env = activated_env(bootstrap)
        self.logs = logs
        self.before_consumer = before_consumer
        self.count = 0

    def run(self, command: str) -> str | None:
        """Why the command failed, or None if it worked."""
        self.count += 1
        log = self.logs / f"command-{self.count:02d}.log"
        if script_of(command) in CONSUMERS:
            self.before_consumer()
        with log.open("wb") as out, self._producing_if_bounded_by_count(command):
            process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, for Ctrl-C and clean-up
            )
            try:
                if runs_until_stopped(command):
                    failure = self._until_first_line(command, process, log)
                else:
                    failure = self._to_end(process)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        output = log.read_text(errors="replace")
        failure = failure or self._judge(command, output)
        return f"{failure}; its output ({log}):\n{tail(output)}" if failure else None

    @contextlib.contextmanager
    def _producing_if_bounded_by_count(self, command: str) -> Iterator[None]:
        """A consumer that ends after N records runs while a producer writes, as the demo's
        do (bounded: 50 msg/s for at most 60 s); one that waits for an idle topic could not."""
        if script_of(command) not in CONSUMERS or "--max-messages" not in words(command):
            yield
            return
        producer = subprocess.Popen(
            ["python", "producer.py", "--count", "3000", "--interval", "0.02", "--quiet"],
            cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            yield
            assert producer.poll() is None, "the producer ended before the consumer: no test"
        finally:
            producer.terminate()
            producer.wait(timeout=30)

    def _to_end(self, process: subprocess.Popen) -> str | None:
        try:
            status = process.wait(timeout=BOUNDED_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"still running after {BOUNDED_TIMEOUT} s (document a bound, or a Ctrl-C)"
        return f"exit status {status}" if status else None

    def _until_first_line(self, command: str, process: subprocess.Popen, log: Path) -> str | None:
        first = FIRST_LINE[script_of(command) or ""]
        seen = wait_until(
            lambda: first in log.read_text(errors="replace") or process.poll() is not None,
            timeout=FIRST_LINE_TIMEOUT,
            what=f"{first!r} from {command!r}",
            every=0.2,
            required=False,
        )
        if process.poll() is not None:
            return f"exited with status {process.returncode} before Ctrl-C"
        if seen is None:
            return f"no {first!r} line within {FIRST_LINE_TIMEOUT} s"
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        try:
            status = process.wait(timeout=SIGINT_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"still running {SIGINT_TIMEOUT} s after Ctrl-C"
        return f"exit status {status} after Ctrl-C" if status else None

    @staticmethod
    def _judge(command: str, output: str) -> str | None:
        error = FAILURE_LINE.search(output)
        if error:
            return f"printed an error line: {output[error.start() :].splitlines()[0]!r}"
        for pattern, shows in expected_output(command):
            if not re.search(pattern, output):
                return f"did not show {shows} (/{pattern}/)"
        return None


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def runner(kafka_cluster, tmp_path_factory) -> Runner:
    """A runner on the session's cluster, which is left as after `make demo`: messages in
    final-1-topic, and both groups with committed offsets (a group that never committed is
    "not found" by `ConsumerGroupCommand --describe`)."""
    if not kafka_cluster.managed:
        pytest.skip(
            "the docs' `python -m localcluster` commands address the local cluster, not the"
            " one KAFKA_BOOTSTRAP_SERVERS names"
        )
    assert (VENV / "bin" / "activate").is_file(), "no .venv: run `make venv`"
    env = app_env(kafka_cluster.bootstrap)

    def produce() -> None:
        result = run_script("producer.py", "--count", 10, "--interval", 0, "--quiet", env=env)
        assert result.returncode == 0, f"the producer failed:\n{result.stderr}"

    produce()
    for consumer in CONSUMERS:
        result = run_script(consumer, "--idle-exit", 3, env=env, timeout=90)
        assert result.returncode == 0, f"{consumer} failed:\n{result.stderr}"
    write_dead_letter(kafka_cluster.bootstrap)
    return Runner(kafka_cluster.bootstrap, tmp_path_factory.mktemp("docs"), produce)


def write_dead_letter(bootstrap: str) -> None:
    """A record of final-1-topic, read back, written to the dead-letter topic as failed, by the
    writer the consumers use (headers and all)."""
    reader = Consumer(  # assigned, not subscribed: it joins no group and commits nothing
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    reader.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(3)])
    record, deadline = None, time.monotonic() + 30
    try:
        while record is None and time.monotonic() < deadline:
            msg = reader.poll(0.5)
            record = msg if msg is not None and msg.error() is None else None
    finally:
        reader.close()
    assert record is not None, f"no record of {TOPIC} to dead-letter"
    config = dead_letters.dead_letter_producer_config(bootstrap, None, {})
    writer = dead_letters.DeadLetters(DEAD_LETTER_TOPIC, "test-docs", config)
    failure = attempts.poison(ValueError("an example failure, for the docs"))
    assert writer.send(record, failure), f"the dead letter was not written to {DEAD_LETTER_TOPIC}"
    writer.close()


def test_extractor_finds_the_commands_known_to_be_there() -> None:
    """Control: the extractor sees the commands a newcomer needs, in full, and no comment."""
    commands = {c.command: c.where for c in documented_commands()}
    flats = {flat(c) for c in commands}
    assert "source .venv/bin/activate" in flats
    assert "python -m localcluster status" in flats
    assert "make demo" in flats
    assert "python batch_message_consumer.py --group-id replay-1 --max-messages 10" in flats
    assert "python single_message_consumer.py --idle-exit 10" in flats  # --help and README
    consoles = [c for c in commands if "ConsoleConsumer" in c]
    assert consoles, "topic.txt's console consumer command was not found"
    assert all(c.startswith("java -cp ") and "print.offset=true" in c for c in consoles)
    # Each console consumer is held to one SHOWS pattern: the main topic's, or the dead letters'.
    shown = [[shows for _, shows in expected_output(c)] for c in consoles]
    assert sorted(map(len, shown)) == [1, 1], shown
    assert any("headers" in shows[0] for shows in shown), shown
    dead_letter_line = next(output for _, output, shows in SHOWS if "dead letter" in shows)
    without_headers = 'Partition:0\tOffset:7\tkey-1\t{"message_id":"key-1"}'
    assert re.search(SHOWS[0][1], without_headers)  # control: a main topic's line passes its own
    assert not re.search(dead_letter_line, without_headers)
    assert all(not c.startswith("#") for c in commands)
    assert any(where.endswith("--help") for wheres in commands.values() for where in wheres)

    sample = "\n".join(
        [
            "```bash",
            "# a comment",
            "echo one \\",
            "  two   # and a trailing comment",
            "",
            "echo three",
            "```",
            "```",
            "echo not-bash",
            "```",
        ]
    )
    assert readme_commands(sample, "x") == [
        ("x:3", "echo one \\\n  two   # and a trailing comment"),
        ("x:6", "echo three"),
    ]
    with pytest.raises(AssertionError, match="write ```bash"):
        readme_commands("```sh\necho hidden\n```\n", "x")
    help_text = "Example: ``python batch_message_consumer.py\n    --idle-exit 10`` ``--quiet``"
    assert help_commands("b.py", help_text) == [
        ("b.py --help", "python batch_message_consumer.py --idle-exit 10")
    ]


def test_commands_are_classified() -> None:
    """Control: what runs until Ctrl-C, what is excluded, and that a command left out of both
    is reported."""
    assert runs_until_stopped("python producer.py   # Ctrl-C stops it, or --count 5")
    assert not runs_until_stopped("python producer.py --count 10")
    assert not runs_until_stopped("python batch_message_consumer.py --idle-exit 10")
    assert exclusion("docker compose up --build")
    assert exclusion("make down   # stops the brokers")
    assert exclusion("python batch_message_consumer.py") is None
    documented = [Documented("echo a"), Documented("echo b")]
    assert unaccounted(documented, {"echo a": "ran"}) == ["echo b"]


def test_runner_reports_a_wrong_command(runner: Runner) -> None:
    """Control: the runner fails what does not work, exit status 0 or not."""
    bad_class = (
        "java -cp '.cache/kafka-4.3.1/lib/*' org.apache.kafka.tools.NoSuchCommand \\\n"
        '  --bootstrap-server "${KAFKA_BOOTSTRAP_SERVERS:-localhost:9094}" --list'
    )
    assert "exit status 1" in (runner.run(bad_class) or "")
    missing_group = (
        "java -cp '.cache/kafka-4.3.1/lib/*' "
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "
        '--bootstrap-server "${KAFKA_BOOTSTRAP_SERVERS:-localhost:9094}" '
        "--describe --group no-such-group-of-test-docs"
    )
    assert "printed an error line: 'Error:" in (runner.run(missing_group) or "")
    # A long-running script that stops before its first line (a bad value: exit status 2).
    assert "before Ctrl-C" in (runner.run("python batch_message_consumer.py --batch-size 0") or "")
    # A command that works but does not show what it is for.
    assert "did not show" in (runner.run("python -m localcluster status --help") or "")


def test_every_documented_command_works_as_written(runner: Runner) -> None:
    commands = documented_commands()
    outcomes: dict[str, str] = {}
    failures: list[str] = []
    started = time.monotonic()
    for documented in commands:
        command, where = documented.command, ", ".join(documented.where)
        why = exclusion(command)
        if why:
            outcomes[command] = f"excluded: {why}"
            continue
        failure = runner.run(command)
        outcomes[command] = "failed" if failure else "ran"
        if failure:
            failures.append(f"{where}: {command}\n  {failure}")
    missing = unaccounted(commands, outcomes)
    assert not missing, f"documented commands neither run nor excluded: {missing}"
    unused = [p for p, _ in EXCLUDED if not any(re.search(p, flat(c.command)) for c in commands)]
    assert not unused, f"exclusions that match no documented command any more: {unused}"
    excluded = [c for c, outcome in outcomes.items() if outcome.startswith("excluded")]
    print(
        f"docs commands: {len(outcomes) - len(excluded)} run ({len(failures)} failed),"
        f" {len(excluded)} excluded, in {time.monotonic() - started:.0f} s"
    )
    assert not failures, "documented commands that do not work as written:\n\n" + "\n\n".join(
        failures
    )
