"""Makes the images docker-compose.yml runs exist: present, pulled, or built as a stand-in.

A stand-in is built only for an image the engine can neither find nor pull. Both stand-ins
start from one Debian bookworm root made by debootstrap (root and Debian's debootstrap needed)
and imported into the engine; standins/python and standins/kafka add the rest. Stand-ins carry
the label ``kafka-python-demo.standin=true``, so a test can say which images were stand-ins.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from localcluster import jars

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STANDIN_LABEL = "kafka-python-demo.standin"
BASE_IMAGE = "kafka-python-demo/standin-base:bookworm"
DEBIAN_MIRROR = os.environ.get("STANDINS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PULL_TIMEOUT = float(os.environ.get("STANDINS_PULL_TIMEOUT", "60"))
# Extra CA certificates of the building machine, for pip behind a TLS-inspecting proxy.
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")

Say = Callable[[str], None]


class StandinError(Exception):
    """An image could not be had; the message says which and why."""


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise StandinError(f"docker {' '.join(args[:2])} failed: {result.stderr.strip()[-800:]}")
    return result


def engine_problem() -> str | None:
    """None when a Docker engine answers; otherwise why not, in one line."""
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    try:
        result = docker("version", "--format", "{{.Server.Version}}", timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20 s"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no answer"]
        return f"no Docker engine reachable ({lines[-1]})"
    return None


def present(image: str) -> bool:
    return docker("image", "inspect", image, check=False).returncode == 0


def is_standin(image: str) -> bool:
    label = f'{{{{index .Config.Labels "{STANDIN_LABEL}"}}}}'
    result = docker("image", "inspect", "--format", label, image, check=False)
    return result.returncode == 0 and result.stdout.strip() == "true"


def try_pull(image: str) -> bool:
    try:
        return docker("pull", "--quiet", image, timeout=PULL_TIMEOUT, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def dockerfile_base(dockerfile: Path) -> str:
    """The image a Dockerfile builds FROM (its first FROM line)."""
    match = re.search(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
    if not match:
        raise StandinError(f"{dockerfile} has no FROM line")
    return match[1]


def ensure(image: str, kafka_version: str, cache: Path, say: Say) -> str:
    """Makes `image` exist; returns how: 'present', 'pulled' or 'stand-in'."""
    if present(image):
        return "stand-in" if is_standin(image) else "present"
    say(f"{image}: not in the engine; trying to pull it (at most {PULL_TIMEOUT:.0f} s)")
    if try_pull(image):
        return "pulled"
    if image.startswith("apache/kafka:"):
        build_kafka(image, kafka_version, cache, say)
    elif image.startswith("python:"):
        build_python(image, say)
    else:
        raise StandinError(f"{image} cannot be pulled, and there is no stand-in recipe for it")
    return "stand-in"


def run_logged(command: list[str], log: Path, what: str, say: Say, timeout: float) -> None:
    """Runs a long step with its output in `log`; says when it starts and how long it took."""
    say(f"{what} (log: {log})")
    started = time.monotonic()
    with log.open("wb") as out:
        try:
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StandinError(f"{what}: no end after {timeout:.0f} s; see {log}") from None
    if code.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise StandinError(f"{what} failed ({code.returncode}):\n{tail}")
    say(f"{what}: done in {time.monotonic() - started:.0f} s")


def ensure_base(work: Path, say: Say) -> str:
    """The Debian bookworm root both stand-ins start from, imported into the engine once."""
    if present(BASE_IMAGE):
        return BASE_IMAGE
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise StandinError(
            "building a stand-in needs root and Debian's debootstrap (apt-get install debootstrap)"
        )
    rootfs = work / "rootfs"
    command = ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR]
    run_logged(command, work / "debootstrap.log", "debootstrap of Debian bookworm", say, 900)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout, capture_output=True, text=True
    )
    tar.wait()
    if imported.returncode != 0 or tar.returncode != 0:
        raise StandinError(f"docker import of the Debian root failed: {imported.stderr.strip()}")
    return BASE_IMAGE


def build(image: str, context: Path, base: str, work: Path, say: Say) -> None:
    # The classic builder takes the local base image as it is; BuildKit would ask a registry.
    command = [
        "env", "DOCKER_BUILDKIT=0", "docker", "build", "--build-arg", f"BASE={base}",
        "--label", f"{STANDIN_LABEL}=true", "-t", image, str(context),
    ]  # fmt: skip
    run_logged(command, work / "build.log", f"building stand-in {image}", say, 1200)


def build_python(image: str, say: Say) -> None:
    with tempfile.TemporaryDirectory(prefix="standin-python-") as tmp:
        work = Path(tmp)
        base = ensure_base(work, say)
        context = work / "context"
        shutil.copytree(HERE / "python", context)
        extra = context / "extra-ca"
        extra.mkdir()
        for cert in EXTRA_CA_DIR.glob("*.crt") if EXTRA_CA_DIR.is_dir() else ():
            shutil.copy(cert, extra / cert.name)
        build(image, context, base, work, say)


def build_kafka(image: str, kafka_version: str, cache: Path, say: Say) -> None:
    tag = image.partition(":")[2]
    if tag != kafka_version:
        raise StandinError(f"{image}: the stand-in is built for the compose file's {kafka_version}")
    lib = jars.ensure_jars(cache, kafka_version, say)
    with tempfile.TemporaryDirectory(prefix="standin-kafka-") as tmp:
        work = Path(tmp)
        base = ensure_base(work, say)
        context = work / "context"
        shutil.copytree(HERE / "kafka", context)
        shutil.copytree(lib, context / "libs", ignore=shutil.ignore_patterns(".complete"))
        build(image, context, base, work, say)
