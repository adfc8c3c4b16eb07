"""The metrics and health endpoint (``--metrics-port``): /metrics for Prometheus, /healthz
(liveness: restart me) and /readyz (readiness: I can do my work now), each answering 200 or
503 with one line of text that says why."""

import http.server
import logging
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.registry import Collector, CollectorRegistry

from kafka_app import commits
from kafka_app.client_health import STATS_INTERVAL_MS, ClientHealth
from kafka_app.client_stats import brokers_up, group
from kafka_app.lifecycle import EXIT_USAGE, Heartbeat

Check = Callable[[], str | None]  # None when all is well, else why not


def liveness(health: ClientHealth, heartbeat: Heartbeat, bound: float) -> Check:
    """Alive unless the client can never work again, a commit is stuck, or the main loop has
    not turned for ``bound`` seconds (then only a restart helps)."""

    def check() -> str | None:
        now = time.monotonic()
        if health.stranded:
            return "the client knows no broker any more and cannot recover (librdkafka#5301)"
        if health.fatal_error is not None:
            return f"fatal Kafka error: {health.fatal_error.str()}"
        if health.refused is not None:
            return health.refused
        if (since := commits.STATS.running_since) is not None and now - since > bound:
            return f"a commit has been running for {now - since:.0f} s (bound {bound:g} s)"
        if (idle := now - heartbeat.at) > bound:
            return f"the main loop has not turned for {idle:.0f} s (bound {bound:g} s)"
        return None

    return check


def readiness(health: ClientHealth, client_type: str) -> Check:
    """Ready while a broker is reachable and, for a consumer, it has partitions to consume.
    Both come from the client's statistics, so a change shows within STATS_INTERVAL_MS; losing
    every broker shows at once (librdkafka reports it as an error). Not ready either while a
    commit waits longer than that: the statistics, served by poll(), then stand still."""
    waited_too_long = STATS_INTERVAL_MS / 1000

    def check() -> str | None:
        if health.broken:
            return "the client cannot work any more (see /healthz)"
        since = commits.STATS.running_since
        if since is not None and (waited := time.monotonic() - since) > waited_too_long:
            return f"a commit has waited {waited:.0f} s for the group coordinator"
        if (report := health.stats_of(client_type)) is None:
            return f"no statistics from the client yet (every {STATS_INTERVAL_MS / 1000:g} s)"
        at, stats = report
        if brokers_up(stats) == 0 or health.all_brokers_down_at > at:
            return "no broker reachable"
        joined = group(stats)
        if client_type == "consumer" and joined.get("assignment_size", 0) == 0:
            return f"no partitions assigned (group state {joined.get('join_state', 'unknown')})"
        return None

    return check


def serve(address: str, port: int, metrics: Iterable[Collector], live: Check, ready: Check) -> int:
    """Serve the three endpoints from a daemon thread; return the port (``port`` 0: any)."""
    registry = CollectorRegistry()
    for standard in (ProcessCollector, PlatformCollector, GCCollector):  # CPU, memory, fds, GC
        standard(registry=registry)
    for collector in metrics:
        registry.register(collector)
    checks = {"/healthz": live, "/readyz": ready}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif (check := checks.get(path)) is not None:
                why = check()
                self._answer(503 if why else 200, f"{why or 'ok'}\n".encode())
            else:
                self._answer(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _answer(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8"):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a line per scrape would drown the app's own

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
    bound = server.server_address[1]
    logging.info(f"Metrics and probes on http://{address}:{bound}/metrics, /healthz, /readyz")
    return bound


def start(args, health: ClientHealth, heartbeat: Heartbeat, client_type: str, collectors) -> None:
    """Serve the endpoints if ``--metrics-port`` asks for them, with ``collectors`` (from
    kafka_app/metrics.py); a port that cannot be had exits 2, with one line."""
    if args.metrics_port is None:
        return
    live = liveness(health, heartbeat, args.liveness_timeout)
    ready = readiness(health, client_type)
    try:
        serve(args.metrics_address, args.metrics_port, collectors, live, ready)
    except OSError as exc:
        where = f"{args.metrics_address}:{args.metrics_port}"
        logging.error(f"Cannot serve metrics on {where} (--metrics-port): {exc.strerror or exc}")
        raise SystemExit(EXIT_USAGE) from None
