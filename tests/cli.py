"""Running the command-line tools in a child process, as a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# TensorFlow's C++ log lines (glog/absl format: severity, MMDD, time, thread, file:line]) and absl's notice.
TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl)",
                         re.MULTILINE)
ANSI = re.compile(r"\x1b\[")


def cli_env(**extra: str) -> dict:
    """The environment of a child process: the checkout importable (as ``pip install -e .`` makes it) and
    ``TF_CPP_MIN_LOG_LEVEL`` left to the tools (a user's shell does not set it)."""
    env = dict(os.environ, PYTHONPATH=REPO, **extra)
    if "TF_CPP_MIN_LOG_LEVEL" not in extra:
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def run_cli(args, cwd: str = REPO, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
    """``python ARGS...`` with stdout and stderr redirected to pipes (not a terminal); returns the result."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=cli_env(**extra_env))


def assert_plain_output(done: subprocess.CompletedProcess) -> None:
    """No TensorFlow C++ log line, no ``\\r`` progress frame and no ANSI code on stdout or stderr."""
    for name, text in (("stdout", done.stdout), ("stderr", done.stderr)):
        assert not TF_LOG_LINE.search(text), f"TensorFlow log line on {name}:\n{text}"
        assert "\r" not in text, f"carriage return on {name}:\n{text!r}"
        assert not ANSI.search(text), f"ANSI code on {name}:\n{text!r}"
