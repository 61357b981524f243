"""Data-parallel training (mrcnn.distribute): replicas on logical CPU devices and worker processes on 127.0.0.1.

TensorFlow fixes its devices and collective operations when it starts, so each layout runs in a process of its own
(tests/distributed_run.py, a tiny shapes model whose steps do not depend on the sampling draws).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mrcnn import distribute
from mrcnn.data import MaskRCNNSequence
from samples.shapes import ShapesConfig, ShapesDataset

RUN = str(Path(__file__).with_name("distributed_run.py"))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def _run(args, timeout=300, env=None):
    result = subprocess.run([sys.executable, RUN, *args], capture_output=True, text=True, timeout=timeout,
                            env=env or ENV)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _weights(npz, prefix="w"):
    return [npz[k] for k in sorted((k for k in npz.files if k[0] == prefix and k[1:].isdigit()),
                                   key=lambda k: int(k[1:]))]


def _max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b) if x.size)


def test_two_replicas_take_the_step_of_one_device_on_the_same_global_batch(tmp_path):
    init = str(tmp_path / "init.h5")
    _run(["--logs", str(tmp_path / "one"), "--init", init, "--out", str(tmp_path / "one.npz"),
          "--bn", "frozen", "sync"])
    _run(["--strategy", "mirrored", "--replicas", "2", "--logs", str(tmp_path / "two"), "--init", init,
          "--out", str(tmp_path / "two.npz"), "--bn", "frozen", "sync", "local"])
    one = {bn: np.load(tmp_path / f"one_{bn}.npz") for bn in ("frozen", "sync")}
    two = {bn: np.load(tmp_path / f"two_{bn}.npz") for bn in ("frozen", "sync", "local")}
    # The same images: one step of 2 on one device, 1 on each replica.
    assert sorted(one["frozen"]["image_ids"]) == sorted(two["frozen"]["image_ids"]) and \
        len(two["frozen"]["image_ids"]) == 2

    # Frozen BatchNorm: the same losses and weights up to float32 rounding, after a step that moved them (clipped
    # gradients, global-batch means).
    step = _max_diff(_weights(one["frozen"]), _weights(one["frozen"], "i"))
    assert step > 1e-2
    assert _max_diff(_weights(one["frozen"]), _weights(two["frozen"])) <= 1e-6
    for name in ("loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"):
        np.testing.assert_allclose(two["frozen"][f"loss_{name}"], one["frozen"][f"loss_{name}"], rtol=1e-5)

    # Trained BatchNorm: synchronised statistics give one device's step (up to the rounding of Keras' one-pass
    # variance on the near-constant backgrounds of the shapes), each replica's own do not.
    synced = _max_diff(_weights(one["sync"]), _weights(two["sync"]))
    local = _max_diff(_weights(one["sync"]), _weights(two["local"]))
    assert synced <= 5e-3 and synced < local / 10, (synced, local)
    np.testing.assert_allclose(two["sync"]["loss_loss"], one["sync"]["loss_loss"], rtol=1e-3)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(tmp_path, args, count=2):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(count)]
    procs = []
    for index in range(count):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                               "task": {"type": "worker", "index": index}})}
        log = open(tmp_path / f"worker{index}.txt", "w")
        procs.append(subprocess.Popen(
            [sys.executable, RUN, "--strategy", "multiworker", "--logs", str(tmp_path / f"logs{index}"),
             "--out", str(tmp_path / f"worker{index}.npz"), *args], stdout=log, stderr=subprocess.STDOUT, env=env))
    return procs


def _stop(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_two_worker_processes_train_on_disjoint_images_and_the_chief_writes_one_checkpoint(tmp_path):
    procs = _start_workers(tmp_path, ["--steps", "2", "--global-batch", "2", "--collective-timeout", "120"])
    try:
        codes = [proc.wait(timeout=300) for proc in procs]
    finally:
        _stop(procs)
    assert codes == [0, 0], "\n".join((tmp_path / f"worker{i}.txt").read_text()[-3000:] for i in range(2))
    checkpoints = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.h5"))
    assert len(checkpoints) == 1 and checkpoints[0].startswith("logs0/") and \
        checkpoints[0].endswith("mask_rcnn_dist_0001.h5"), checkpoints
    # The other worker writes nothing: no run folder, no TensorBoard logs.
    assert not (tmp_path / "logs1").exists() or not any((tmp_path / "logs1").rglob("*"))
    runs = [np.load(tmp_path / f"worker{i}.npz") for i in range(2)]
    # Both workers hold the same weights; each step read one image on each, none on both.
    assert _max_diff(_weights(runs[0]), _weights(runs[1])) == 0.0
    assert _max_diff(_weights(runs[0]), _weights(runs[0], "i")) > 1e-2
    ids = [set(run["image_ids"].tolist()) for run in runs]
    assert [len(run["image_ids"]) for run in runs] == [2, 2] and not ids[0] & ids[1]
    assert float(runs[0]["loss_loss"]) == float(runs[1]["loss_loss"])


def test_a_killed_worker_stops_the_other_with_an_error_in_bounded_time(tmp_path):
    procs = _start_workers(tmp_path, ["--steps", "200", "--global-batch", "2", "--collective-timeout", "120"])
    log = tmp_path / "worker0.txt"
    try:
        deadline = time.monotonic() + 240
        while "step 2 done" not in log.read_text():
            assert procs[0].poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        code = procs[0].wait(timeout=120)
        elapsed = time.monotonic() - killed
    finally:
        _stop(procs)
    text = log.read_text()
    print(f"worker 0 stopped {elapsed:.1f} s after worker 1 was killed")
    assert code == 3, text[-3000:]
    assert "another worker of the multi-worker run stopped answering" in text
    assert elapsed < 90


def _shapes(count):
    dataset = ShapesDataset()
    dataset.load_shapes(count, 128, 128, seed=1)
    dataset.prepare()
    return dataset


class _Config(ShapesConfig):
    IMAGES_PER_GPU = 2
    SEED = 5


def _ids(sequence, index):
    return sequence[index]["input_image_meta"][:, 0].astype(int).tolist()


def test_worker_shards_split_each_step_of_the_common_order():
    dataset, config = _shapes(12), _Config()
    whole = MaskRCNNSequence(dataset, config, shuffle=True, steps=3, batch_size=4, seed=5)
    shards = [MaskRCNNSequence(dataset, config, shuffle=True, steps=3, batch_size=2, seed=5, shard=(i, 2))
              for i in range(2)]
    for step in range(3):
        assert _ids(shards[0], step) + _ids(shards[1], step) == _ids(whole, step)
    epoch = [i for s in shards for step in range(3) for i in _ids(s, step)]
    assert sorted(epoch) == list(range(12))  # 3 steps of 2 x 2 images: every image once
    with pytest.raises(ValueError, match=r"shard must be \(index, count\)"):
        MaskRCNNSequence(dataset, config, shard=(2, 2))


def test_one_process_is_its_own_chief_and_reads_everything():
    strategy = distribute.make_strategy("default")
    assert distribute.is_chief(strategy) and distribute.input_shard(strategy) == (0, 1)
    assert not distribute.is_multi_worker(strategy) and distribute.num_replicas(strategy) == 1
    assert distribute.replica_batch(strategy, _Config()) == (2, (0, 1))
    assert distribute.shared_seed(strategy, 11) == 11


@pytest.mark.parametrize("tf_config, problem", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "TF_CONFIG is not a cluster description"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "task worker:3 is not in the cluster"),
])
def test_multiworker_without_a_usable_tf_config_is_refused(monkeypatch, tf_config, problem):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=problem):
        distribute.make_strategy("multiworker")


def test_an_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="Unknown strategy 'ring'"):
        distribute.make_strategy("ring")
