"""Step time of data-parallel training on 1 and 2 CPU replicas (logical CPU devices of one process).

    python benchmarks/distributed.py [--steps 6] [--global-batch 2]

Each layout trains the tiny shapes model of tests/distributed_run.py (128 px) in a process of its own for
``--steps`` steps of the same global batch, and prints the median step time after the first (which traces the step
function). Logical CPU devices share the machine's cores, so this measures the overhead of the replicas and their
all-reduce, not a speed-up: that needs a device per replica (GPUs).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "tests", "distributed_run.py")


def step_times(replicas: int, steps: int, global_batch: int) -> list[float]:
    """Seconds of each training step of one run on ``replicas`` logical CPU devices."""
    with tempfile.TemporaryDirectory() as logs:
        args = [sys.executable, RUN, "--logs", logs, "--steps", str(steps), "--global-batch", str(global_batch),
                "--images", str(max(8, steps * global_batch))]
        if replicas > 1:
            args += ["--strategy", "mirrored", "--replicas", str(replicas)]
        out = subprocess.run(args, capture_output=True, text=True, check=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout
    line = re.search(r"step seconds ([\d. ]+)", out).group(1)
    return [float(t) for t in line.split()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--global-batch", type=int, default=2)
    args = p.parse_args(argv)
    print(f"{'replicas':>8} {'images/replica':>14} {'first step s':>12} {'median step s':>13} {'images/s':>8}")
    for replicas in (1, 2):
        times = step_times(replicas, args.steps, args.global_batch)
        median = float(np.median(times[1:])) if len(times) > 1 else float("nan")
        print(f"{replicas:>8} {args.global_batch // replicas:>14} {times[0]:>12.2f} {median:>13.3f} "
              f"{args.global_batch / median:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
