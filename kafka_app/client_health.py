"""Client health: client-level errors logged without flooding, and the two states in which a
client can do nothing more, a fatal error or stranded with no broker (librdkafka#5301)."""

import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from kafka_app.lifecycle import EXIT_CLIENT_STUCK
from kafka_app.refusals import refusal

# How often clients report statistics (one small JSON document), and how long these may list
# no broker before the client counts as stranded: time for librdkafka to recover by itself.
STATS_INTERVAL_MS = 5000
STRANDED_AFTER_SECONDS = 15.0
REPEAT_INTERVAL = 30.0  # while brokers stay down, repeat a warning at most this often
RETRIABLE = (
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError._TIMED_OUT,
)


# What librdkafka's line per failed connection says when client and listener speak different
# protocols: a TLS client on a plaintext listener, a plaintext one on a TLS or SASL listener.
MISMATCHES = {
    "connecting to a PLAINTEXT broker listener?": "The brokers' listener is plaintext, but this"
    " client speaks TLS: unset KAFKA_SECURITY_PROTOCOL, or use the cluster's TLS listener",
    "in state APIVERSION_QUERY": "The brokers close the connection at the first request: their"
    " listener speaks TLS or SASL (a secured cluster); set KAFKA_SECURITY_PROTOCOL and the"
    " login (README.md, 'Secure it')",
}
# One such line can be a broker going down mid-connection; a mismatch repeats it, each broker
# every retry: this many within MISMATCH_SECONDS is a mismatch.
MISMATCH_REPEATS, MISMATCH_SECONDS = 10, 15.0


class ClientHealth:
    """``error_cb``, ``stats_cb`` and ``logger`` for a client. Unreachable brokers are warned
    about (librdkafka reconnects by itself); a fatal error (say, the idempotent producer's
    state is lost) or a stranded client makes it ``broken``: the script stops."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # seconds; tests pass their own
        self.fatal_error: KafkaError | None = None
        self.stranded = False  # the client knows no broker any more: it will never reconnect
        self.refused: str | None = None  # a secured cluster's refusal (kafka_app/refusals)
        self.principal: str | None = None  # sasl.username, for those lines
        self._mismatches: deque[float] = deque(maxlen=MISMATCH_REPEATS)  # when they came
        self.latest_stats: dict[str, tuple[float, dict]] = {}  # client name -> (when, stats)
        self.all_brokers_down_at = -math.inf  # the last _ALL_BROKERS_DOWN error
        self._no_broker_since: dict[str, float] = {}  # client name -> first stats without one
        self._last_logged: dict[int, float] = {}  # error code -> when last logged
        self._suppressed: dict[int, int] = {}  # error code -> repeats not logged since

    @property
    def broken(self) -> bool:
        return self.fatal_error is not None or self.stranded or self.refused is not None

    def stats_of(self, client_type: str) -> tuple[float, dict] | None:
        """When the first client of this type ("producer", "consumer") last reported
        statistics, and what they said; None before its first report."""
        reports = (r for r in list(self.latest_stats.values()) if r[1].get("type") == client_type)
        return next(reports, None)

    def callbacks(self, statistics: bool = True) -> dict[str, Any]:
        """The client config entries that report here. librdkafka's own log lines go through
        Python logging, in our format: ``WARNING:librdkafka:GETPID [rdkafka#producer-1] ...``.
        ``statistics=False`` for a client that is rarely polled: each report waits in its queue
        until the next poll(), so an idle client would pile them up."""
        logger = logging.getLogger("librdkafka")
        for earlier in [f for f in logger.filters if isinstance(f, ClientHealth)]:
            logger.removeFilter(earlier)  # one client health per script: the latest reads them
        logger.addFilter(self)
        stats = {"stats_cb": self.on_stats, "statistics.interval.ms": STATS_INTERVAL_MS}
        return {"error_cb": self, "logger": logger, **(stats if statistics else {})}

    def __call__(self, error: KafkaError) -> None:
        refused = error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL)
        if refused and (line := refusal(error, self.principal)):
            if self.refused is None:  # librdkafka repeats it with every retry
                self.refused = line
                logging.error(line)
        elif error.fatal():
            self.fatal_error = error
            logging.error("FATAL Kafka error, stopping: %s", error.str())
        elif error.code() in RETRIABLE:
            if error.code() == KafkaError._ALL_BROKERS_DOWN:
                self.all_brokers_down_at = self.clock()
            self._warn_rate_limited(error)
        else:
            logging.error("Kafka error: %s", error.str())

    def filter(self, record: logging.LogRecord) -> bool:
        """librdkafka's own lines: its line per failed connection attempt (facility FAIL), many
        a second while brokers are down, is dropped (error_cb reports the same, rate-limited),
        unless it shows a protocol mismatch (MISMATCHES): that stops the script. The warning an
        idempotent producer logs while a starting cluster loads its coordinators, in words."""
        args = record.args if isinstance(record.args, tuple) else ()
        if args[:1] == ("FAIL",):
            self._watch_mismatch(str(args[-1]))
            return False
        if args[:1] == ("GETPID",) and "load in progress" in str(args[-1]):
            record.levelno, record.levelname, record.args = logging.INFO, "INFO", ()
            record.msg = "Waiting for a producer ID: the cluster is still starting; retrying"
        return True

    def _watch_mismatch(self, text: str) -> None:
        for sign, line in MISMATCHES.items():
            if sign in text and self.refused is None:
                self._mismatches.append(self.clock())
                times = self._mismatches
                if len(times) == MISMATCH_REPEATS and times[-1] - times[0] <= MISMATCH_SECONDS:
                    self.refused = line
                    logging.error(line)

    def on_stats(self, stats_json: str) -> None:
        """Mark the client stranded once its statistics have listed no broker for a while:
        librdkafka forgets every broker a Metadata response leaves out, and the last broker of
        a cluster shutting down may answer with none; the client then never re-bootstraps."""
        stats = json.loads(stats_json)
        if (brokers := stats.get("brokers")) is None:
            return
        name, now = stats.get("name", ""), self.clock()
        self.latest_stats[name] = (now, stats)  # for the metrics and probes (kafka_app/probes)
        if any(b.get("source") in ("configured", "learned") for b in brokers.values()):
            self._no_broker_since.pop(name, None)
            return
        since = self._no_broker_since.setdefault(name, now)
        if now - since >= STRANDED_AFTER_SECONDS and not self.stranded:
            self.stranded = True
            logging.critical(
                f"The Kafka client has known no broker for {now - since:.0f} s and will not"
                f" recover by itself (librdkafka#5301): exiting {EXIT_CLIENT_STUCK}, for a restart"
            )

    def _warn_rate_limited(self, error: KafkaError) -> None:
        code, now = error.code(), self.clock()  # reported on every attempt, several a second
        if now - self._last_logged.get(code, -math.inf) < REPEAT_INTERVAL:
            self._suppressed[code] = self._suppressed.get(code, 0) + 1
            return
        self._last_logged[code] = now
        repeats = self._suppressed.pop(code, 0)
        more = f" ({repeats} similar in the last {REPEAT_INTERVAL:g} s)" if repeats else ""
        if code == KafkaError._ALL_BROKERS_DOWN:
            logging.warning(
                "No broker reachable (is the cluster up? `make up`, or `docker compose up -d`);"
                " librdkafka keeps retrying%s",
                more,
            )
        else:
            logging.warning("Kafka connection problem, retrying: %s%s", error.str(), more)
