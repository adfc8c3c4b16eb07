"""The app containers' Docker healthcheck: ``python -m kafka_app.probe_check [PATH ...]`` asks
this container's own endpoint (kafka_app/probes, on 127.0.0.1:$METRICS_PORT) for each PATH,
/healthz and /readyz unless given, and exits 0 only if every one answers 200.

It prints one line per path with the endpoint's own reason: Docker keeps that output in the
container's health log (`docker inspect`), where ``python -c "urlopen(...)"`` would leave a
traceback. The image has no curl."""

import os
import sys
import urllib.error
import urllib.request

TIMEOUT = 3.0  # seconds per path: both fit in the healthcheck's timeout, so a reason prints


def ask(url: str) -> tuple[bool, str]:
    """(answered 200, what it said)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            return True, answer.read().decode().strip()
    except urllib.error.HTTPError as exc:  # 503: the body says why
        return False, f"{exc.code} {exc.read().decode().strip()}"
    except urllib.error.URLError as exc:
        return False, f"no answer: {exc.reason}"
    except OSError as exc:  # a timeout while reading
        return False, f"no answer: {exc}"


def main(paths: list[str]) -> int:
    port = os.environ.get("METRICS_PORT", "")
    if not port.isdigit() or int(port) == 0:
        print(f"METRICS_PORT={port!r}: no fixed port to ask (the endpoint is off or on any port)")
        return 1
    healthy = True
    for path in paths or ["/healthz", "/readyz"]:
        ok, said = ask(f"http://127.0.0.1:{port}{path}")
        print(f"{path}: {said}")
        healthy = healthy and ok
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
