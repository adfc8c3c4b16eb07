"""python -m standins: make the images docker-compose.yml needs exist (see standins/__init__.py).

Exit status: 0 when every image is there (present, pulled or built), 1 when one could not be
had, 2 when no Docker engine answers.
"""

from __future__ import annotations

import argparse
import sys
import time

from localcluster.cluster import ROOT, LocalCluster
from standins import images


def required_images(cluster: LocalCluster) -> list[str]:
    """The Kafka image of the brokers and the base image of the apps' Dockerfile."""
    return [
        f"apache/kafka:{cluster.model.kafka_version}",
        images.dockerfile_base(ROOT / "Dockerfile"),
    ]


def ensure_all(say: images.Say) -> dict[str, str]:
    """Image -> how it came to be there ('present', 'pulled' or 'stand-in')."""
    cluster = LocalCluster(say=say)
    return {
        image: images.ensure(image, cluster.model.kafka_version, cluster.cache, say)
        for image in required_images(cluster)
    }


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m standins", description=__doc__).parse_args(argv)
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    problem = images.engine_problem()
    if problem:
        print(f"standins: {problem}", file=sys.stderr)
        return 2
    try:
        for image, how in ensure_all(say).items():
            print(f"{image}: {how}")
    except images.StandinError as exc:
        print(f"standins: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
