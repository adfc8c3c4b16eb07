"""The one bounded wait of the tests: poll a condition until it holds or a time limit fails."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from .processes import App, Supervised


def wait_until(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    alive: Iterable[App | Supervised] = (),
    every: float = 0.05,
    required: bool = True,
    say: Callable[[str], None] | None = None,
    say_every: float = 15,
) -> float | None:
    """Poll until `condition()` is true; return the seconds it took.

    Fails on timeout (or returns None if not `required`: the caller's assertions then say
    what is missing), and at once if one of the `alive` apps has exited. On a failing timeout
    the `alive` apps are ended with SIGABRT, which writes every thread's stack to their logs,
    and the message shows the end of each log. With `say`, says every `say_every` seconds
    that it is still waiting.
    """
    started = said = time.monotonic()
    while not condition():
        for app in alive:
            app.require_alive()
        if time.monotonic() - started > timeout:
            if not required:
                return None
            apps = [app.app if isinstance(app, Supervised) else app for app in alive]
            native = {app.name: app.dump_stacks() for app in apps}
            logs = "".join(
                f"\n--- {app.name}'s log ends with:\n{app.tail(40)}"
                + (f"\n--- {app.name}'s C threads:\n{native[app.name]}" if native[app.name] else "")
                for app in apps
            )
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{logs}")
        now = time.monotonic()
        if say is not None and now - said >= say_every:
            say(f"still waiting for {what} ({now - started:.0f} s)")
            said = now
        time.sleep(every)
    return time.monotonic() - started
