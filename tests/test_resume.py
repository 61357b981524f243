"""A run interrupted after epoch 1 and resumed from its checkpoint ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from tests.cli import cli_env

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resume_run.py")


def test_interrupted_and_resumed_run_ends_with_the_uninterrupted_weights(tmp_path):
    out = tmp_path / "weights.npz"
    done = subprocess.run([sys.executable, SCRIPT, "--logs", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=900, env=cli_env())
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as data:
        whole = {k.split("/", 1)[1].split(":", 1)[0]: data[k] for k in data.files if k.startswith("whole/")}
        resumed = {k.split("/", 1)[1].split(":", 1)[0]: data[k] for k in data.files if k.startswith("resumed/")}
        names = {k.split("/", 1)[1].split(":", 1)[0]: k.split(":", 1)[1] for k in data.files if k.startswith("whole/")}
    assert whole.keys() == resumed.keys() and len(whole) > 100
    # Momentum, the iteration count, the sampling generator, the image order and the augmentation draws all go on
    # from the checkpoint's training state, so with deterministic ops the weights are equal.
    differing = [names[k] for k in whole if not np.array_equal(whole[k], resumed[k])]
    assert not differing, differing[:5]
    assert any("moving_variance" in n for n in names.values()), "TRAIN_BN must train the BatchNorm statistics"
    # The runs did train: the weights moved away from a fresh model's.
    assert any(np.abs(whole[k]).sum() > 0 for k in whole)
