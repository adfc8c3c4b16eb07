"""The scripts' command lines: each setting a flag, else its environment variable, else its
default (README.md, "Settings"); a bad value is one error line and exit status 2."""

import argparse
import math
import os
from collections.abc import Callable
from typing import Any, NoReturn

from kafka_app import settings
from kafka_app.client_id import default_client_id
from kafka_app.lifecycle import EXIT_USAGE


def _checked(convert: Callable[[str], float], ok: Callable[[float], bool], rule: str) -> Any:
    """An argparse type: ``convert``, then ``ok`` must hold; else a one-line error."""

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {rule}: {text!r}") from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value

    return parse


non_negative_float = _checked(float, lambda value: value >= 0, "a finite number >= 0")
positive_float = _checked(float, lambda value: value > 0, "a finite number > 0")
positive_int = _checked(int, lambda value: value > 0, "a whole number > 0")
port_number = _checked(int, lambda value: 0 <= value <= 65535, "a port number, 0 to 65535")


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def one_of(*names: str) -> Callable[[str], str]:
    """An argparse type: one of ``names``, in any case."""
    known = {name.lower(): name for name in names}

    def parse(text: str) -> str:
        if (name := known.get(text.strip().lower())) is None:
            raise argparse.ArgumentTypeError(f"expected {', '.join(names)}: {text!r}")
        return name

    return parse


def env_option(parser, flag: str, env: str, default: Any, parse: Callable, text: str) -> None:
    """``flag``, else the environment variable ``env`` (when not blank), else ``default``;
    argparse runs ``parse`` on the variable's text as on the flag's."""
    from_env = os.environ.get(env, "")
    text += f" (env {env}{'' if default is None else f'; default: {default}'})"
    default = from_env if from_env.strip() else default
    parser.add_argument(flag, default=default, type=parse, help=text)


class _OneLineErrors(argparse.ArgumentParser):
    """A bad flag or variable gives one error line, as README.md promises; usage is in --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def common_parser(description: str | None, service: str) -> argparse.ArgumentParser:
    """A parser with the options every script has: where Kafka is, which topic, extra client
    settings, who we are, logs. ``description``, the script's docstring, keeps its line breaks;
    ``service`` (the script's name in docker-compose.yml) begins the default client id."""
    formatter = argparse.RawDescriptionHelpFormatter
    secured = f"A secured cluster: {', '.join(settings.SECURITY_VARIABLES)}\n(or"
    secured += " KAFKA_SASL_PASSWORD_FILE), or --client-properties. README.md, 'Secure it'."
    parser = _OneLineErrors(description=description, formatter_class=formatter, epilog=secured)
    brokers = "comma-separated host:port list of brokers; default: bootstrap.servers from the"
    brokers += f" client properties file, else {settings.DEFAULT_BOOTSTRAP_SERVERS}"
    env_option(parser, "--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", None, non_empty, brokers)
    env_option(parser, "--topic", "KAFKA_TOPIC", settings.DEFAULT_TOPIC, non_empty, "topic name")
    extra = "Java .properties file merged into the client config (SASL/SSL, ...)"
    env_option(parser, "--client-properties", "KAFKA_CLIENT_PROPERTIES", None, non_empty, extra)
    me = default_client_id(service)  # make demo sets producer-1, producer-2, ...
    env_option(parser, "--client-id", "KAFKA_CLIENT_ID", me, non_empty, "Kafka client.id")
    levels = one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    env_option(parser, "--log-level", "LOG_LEVEL", settings.DEFAULT_LOG_LEVEL, levels, "log level")
    formats = "text (the seed's INFO:root:...) or json (an object per line)"
    env_option(parser, "--log-format", "LOG_FORMAT", "text", one_of("text", "json"), formats)
    return parser


def probe_options(parser: argparse.ArgumentParser) -> None:
    """The options of a long-running script's metrics and health endpoint (kafka_app/probes)."""
    serve = "serve /metrics, /healthz and /readyz on this port (0: any free one); unset: off"
    env_option(parser, "--metrics-port", "METRICS_PORT", None, port_number, serve)
    where = "the address the metrics port listens on"
    env_option(parser, "--metrics-address", "METRICS_ADDRESS", "0.0.0.0", non_empty, where)
    stuck = "/healthz fails once the main loop or a commit has been stuck this many seconds"
    bound, env = settings.DEFAULT_LIVENESS_TIMEOUT_SECONDS, "LIVENESS_TIMEOUT_SECONDS"
    env_option(parser, "--liveness-timeout", env, bound, positive_float, stuck)


def consumer_parser(description: str | None, service: str, group_env: str, group: str):
    """The common options, the group, and options both consumers have for tests and scripts."""
    parser = common_parser(description, service)
    probe_options(parser)
    env_option(parser, "--group-id", group_env, group, non_empty, "consumer group")
    kip848 = "classic, or consumer: KIP-848's protocol (Kafka 4), rebalancing on the brokers"
    protocols = one_of("classic", "consumer")
    env_option(parser, "--group-protocol", "KAFKA_GROUP_PROTOCOL", "classic", protocols, kip848)
    dlq = "where records that cannot be processed go; default: <topic>.dlq"
    env_option(parser, "--dlq-topic", "KAFKA_DLQ_TOPIC", None, non_empty, dlq)
    tries = "processing attempts before a record is dead-lettered"
    most = settings.DEFAULT_MAX_ATTEMPTS
    env_option(parser, "--max-attempts", "MAX_ATTEMPTS", most, positive_int, tries)
    add = parser.add_argument
    add("--max-messages", type=positive_int, metavar="N", help="exit 0 after N are committed")
    add("--idle-exit", type=positive_float, metavar="SECONDS", help="exit 0 after SECONDS idle")
    add("--processed-log", metavar="PATH", help="append '<partition> <offset> <id>' per record")
    add("--process-delay", type=non_negative_float, default=0.0, help="simulated work per message")
    return parser
