"""The fault tests' own failure report: a wait that times out says where the apps are stuck.

A hang seen once in a CI run is only worth something if the failure shows where each thread
was. No Kafka here: the app is a script that waits forever.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.processes import App, app_env
from support.waits import wait_until

STUCK = "import threading\nthreading.Event().wait()  # like a call that never returns\n"


def time_out_on_a_stuck_app(tmp_path: Path) -> str:
    script = tmp_path / "stuck.py"
    script.write_text(STUCK)
    app = App(str(script), "stuck", [], app_env("localhost:1", "unused"), tmp_path)
    try:
        with pytest.raises(AssertionError) as failure:
            wait_until(lambda: False, 1, "what never happens", [app])
    finally:
        app.close()
    assert not app.alive(), "the stuck app was left running"
    return str(failure.value)


@pytest.mark.faults
def test_a_timed_out_wait_shows_the_python_stacks_and_the_log(tmp_path: Path) -> None:
    message = time_out_on_a_stuck_app(tmp_path)
    assert message.startswith("timed out after 1 s waiting for what never happens")
    assert "--- stuck's log ends with:" in message
    # Python's faulthandler, on the SIGABRT: the line the main thread is waiting on.
    assert f'File "{tmp_path / "stuck.py"}", line 2 in <module>' in message


@pytest.mark.faults
@pytest.mark.skipif(shutil.which("gdb") is None, reason="no gdb (.ci/run installs it)")
def test_a_timed_out_wait_shows_the_c_stacks(tmp_path: Path) -> None:
    message = time_out_on_a_stuck_app(tmp_path)
    c_threads = message.split("--- stuck's C threads:\n", 1)[1].splitlines()
    # The interpreter's main thread, waiting in a lock inside the evaluation loop.
    assert any(line.startswith("python") and "PyThread" in line for line in c_threads), c_threads
    assert "Thread 1 " in (tmp_path / "stuck.native").read_text()
