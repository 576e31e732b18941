"""``GENSTUDIO_LOG``: the SDK's log on stderr at the level it names, and a clear word when it names none."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from genstudio_async import _logs as L

_SCRIPT = "from genstudio_async import AsyncGenStudio; AsyncGenStudio('sk-log-test-0123456789')"


def _run_with_log_setting(value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, L.ENV_LOG: value}
    return subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("value", ["verbose", "10", "debugg"])
def test_a_value_that_is_no_log_level_is_said_not_ignored(value: str) -> None:
    finished = _run_with_log_setting(value)
    assert finished.returncode == 0, finished.stderr
    assert f"{L.ENV_LOG}={value!r} is not a log level" in finished.stderr
    assert "debug, info, warning" in finished.stderr


@pytest.mark.parametrize("value", ["debug", "INFO", " warning "])
def test_a_log_level_is_taken_quietly(value: str) -> None:
    finished = _run_with_log_setting(value)
    assert finished.returncode == 0, finished.stderr
    assert "is not a log level" not in finished.stderr


def test_the_sdks_own_log_handler_never_writes_a_terminal_control_sequence() -> None:
    script = (
        "from genstudio_async import AsyncGenStudio; from genstudio_async._logs import log; "
        "AsyncGenStudio('sk-log-test-0123456789'); "
        "log.debug('traceid=t-\\x1b]0;pwned\\x07\\x1b[2J\\nfake line')"
    )
    env = {**os.environ, L.ENV_LOG: "debug"}
    finished = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert "\x1b" not in finished.stderr and "\x07" not in finished.stderr
    assert r"traceid=t-\x1b]0;pwned\x07\x1b[2J\nfake line" in finished.stderr
