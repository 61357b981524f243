"""Console output of the command-line tools: TensorFlow's start-up logging, progress, ``--quiet`` / ``--verbose``.

- :func:`quiet_tensorflow` (called by every entry point before TensorFlow is imported): TensorFlow's C++ logging
  at warnings and above only (``TF_CPP_MIN_LOG_LEVEL=2``, unless the user set it), and the start-up lines that
  level does not catch (absl's pre-initialisation notice, oneDNN and CPU-feature notes, the failed CUDA probe of a
  machine without CUDA drivers, oneDNN's once-only note on integer transposes) dropped; any other line TensorFlow
  writes while starting is passed on, and everything it logs later at error level is shown.
- :func:`progress`: a tqdm bar on a terminal; when the stream is a file or a pipe, plain lines (about ten per run,
  and at least one every 30 s), with no ``\\r`` frames and no ANSI codes.
- :func:`keras_verbose`: Keras ``fit``'s display: a progress bar on a terminal, one line per epoch otherwise.
- :func:`add_output_arguments`: ``--quiet`` (results and errors only) and ``--verbose`` (TensorFlow's own log
  too, per-layer details).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from typing import IO, Any

__all__ = ["quiet_tensorflow", "is_tensorflow_noise", "progress", "LineProgress", "keras_verbose",
           "add_output_arguments", "is_terminal"]

# Lines TensorFlow writes while it loads and probes devices that say nothing about the run.
_NOISE = [
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    # glog/absl format: severity, MMDD, time, thread, file:line]. Info and warnings (level 2 drops them later on).
    re.compile(r"[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] .*"),
    # The continuation line of cpu_feature_guard's note.
    re.compile(r"To enable the following instructions: .*in other operations, rebuild TensorFlow.*"),
    # Logged once per process, at error level, by the first oneDNN transpose of a small integer or bool tensor
    # (grappler moves the casts of the ground-truth masks after their transpose): it only says that Eigen runs it.
    re.compile(r"E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ util\.cc:\d+\] oneDNN supports DT_\w+ only on platforms with "
               r"AVX-512\. Falling back to the default Eigen-based implementation if present\."),
]
_NO_DRIVER = re.compile(r"[IW]\d{4} .*\] Could not find cuda drivers on your machine")
_CUINIT = re.compile(r"E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] failed call to cuInit: .*")


def is_tensorflow_noise(line: str, no_cuda_driver: bool = False) -> bool:
    """Whether a line of TensorFlow's start-up output is noise (see the module docstring).

    Args:
        line: one line, without its newline.
        no_cuda_driver: TensorFlow said it found no CUDA driver; then the failed ``cuInit`` that follows is noise
            too (with a driver installed it is a real problem and is kept).
    """
    if any(p.fullmatch(line) for p in _NOISE):
        return True
    return no_cuda_driver and bool(_CUINIT.fullmatch(line))


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow with its start-up logging reduced to real problems (call before TensorFlow is imported).

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless the user set it (then TensorFlow logs as the user asked and nothing is
    filtered); imports TensorFlow and lists its devices with the process's stderr captured, and writes back
    every captured line that :func:`is_tensorflow_noise` does not drop. Does nothing more when TensorFlow is
    already imported.

    Args:
        verbose: leave TensorFlow's logging as it is (``--verbose``).
    """
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here, not at the first operation
            tf.transpose(tf.zeros([1, 1, 2], tf.uint8), [2, 0, 1])  # and oneDNN's once-only note (see _NOISE)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines()
            no_driver = any(_NO_DRIVER.match(line) for line in lines)
            kept = [line for line in lines if not is_tensorflow_noise(line, no_driver)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def is_terminal(stream: IO | None) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def keras_verbose(quiet: bool = False, stream: IO | None = None) -> int:
    """Keras ``fit(verbose=...)``: 0 when quiet, 1 (progress bar) on a terminal, 2 (a line per epoch) otherwise."""
    if quiet:
        return 0
    return 1 if is_terminal(stream if stream is not None else sys.stdout) else 2


class LineProgress:
    """A progress display in plain lines for files and pipes, with tqdm's ``update`` / ``write`` / ``close``.

    Prints ``<desc>: <n>/<total> <unit>s (<elapsed> s)`` at every tenth of the total (and at least every
    ``interval`` seconds), and once at the end.
    """

    def __init__(self, total: int | None = None, desc: str = "progress", unit: str = "item",
                 file: IO | None = None, disable: bool = False, interval: float = 30.0, **_: Any):
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file if file is not None else sys.stderr
        self.disable, self.interval = disable, interval
        self.n = 0
        self._start = self._last_time = time.perf_counter()
        self._step = max(1, -(-total // 10)) if total else 0
        self._next = self._step
        self._closed = False

    def _line(self) -> None:
        total = f"/{self.total}" if self.total else ""
        elapsed = time.perf_counter() - self._start
        print(f"{self.desc}: {self.n}{total} {self.unit}s ({elapsed:.1f} s)", file=self.file, flush=True)
        self._last_time = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        due = self._step and self.n >= self._next
        if due or time.perf_counter() - self._last_time >= self.interval:
            while self._step and self._next <= self.n:
                self._next += self._step
            if not (self.total and self.n >= self.total):  # the last line comes from close()
                self._line()

    def write(self, text: str, file: IO | None = None) -> None:
        print(text, file=file if file is not None else self.file, flush=True)

    def close(self) -> None:
        if not self._closed and not self.disable and self.n:
            self._line()
        self._closed = True

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int | None = None, desc: str = "progress", unit: str = "item", file: IO | None = None,
             disable: bool = False, **kwargs: Any):
    """A progress display for ``total`` steps: tqdm on a terminal, :class:`LineProgress` otherwise.

    Args:
        total: the number of steps.
        desc: what is counted (the line prefix).
        unit: the unit's name.
        file: where it goes (default stderr).
        disable: show nothing (``--quiet``).
        kwargs: more tqdm arguments (ignored by the line display).
    """
    file = file if file is not None else sys.stderr
    if is_terminal(file):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=file, disable=disable, dynamic_ncols=True, **kwargs)
    return LineProgress(total=total, desc=desc, unit=unit, file=file, disable=disable)


def add_output_arguments(parser) -> None:
    """``--quiet`` and ``--verbose`` (mutually exclusive) on an argparse parser."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", "-q", action="store_true", help="no progress display: results and errors only")
    group.add_argument("--verbose", "-v", action="store_true",
                       help="more detail: TensorFlow's own start-up log, per-layer training details")

