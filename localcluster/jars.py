"""Resolves Apache Kafka's jars from Maven Central into a git-ignored cache, once per version."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from localcluster.errors import ClusterError

POM = Path(__file__).with_name("pom.xml")
MIN_JAVA = 17


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ClusterError(f"java not found on PATH: Kafka needs Java {MIN_JAVA} or newer")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match[1]) if match else 0
    if major == 1 and match and match[2]:  # "1.8.0" style
        major = int(match[2])
    if major < MIN_JAVA:
        raise ClusterError(f"{java} is Java {major or '?'}: Kafka needs Java {MIN_JAVA} or newer")
    return java


def lib_dir(cache: Path, version: str) -> Path:
    return cache / f"kafka-{version}" / "lib"


def ensure_jars(cache: Path, version: str, say) -> Path:
    """Returns the folder of every jar the broker and CLI tools need, resolving it if missing."""
    lib = lib_dir(cache, version)
    complete = lib / ".complete"
    if complete.exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ClusterError("mvn not found on PATH: it resolves Kafka's jars from Maven Central")
    say(f"resolving Kafka {version} jars from Maven Central into {lib} (once)")
    staging = lib.with_name("lib.partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn, "-B", "-q", "-f", str(POM),
        f"-Dkafka.version={version}",
        f"-Dmaven.repo.local={cache / 'm2'}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-8:])
        raise ClusterError(f"could not resolve Kafka {version} jars with Maven:\n{tail}")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    complete.write_text(version + "\n")
    return lib
