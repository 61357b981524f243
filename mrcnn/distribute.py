"""Data-parallel training on ``tf.distribute``: the strategy, the chief, and what each replica reads.

Build the model inside a strategy's scope and train it as usual; :meth:`mrcnn.model.MaskRCNN.train` runs on every
replica of that strategy::

    strategy = make_strategy("mirrored")          # every visible GPU of this machine
    with strategy.scope():
        model = MaskRCNN("training", config, model_dir="logs")
    model.train(train_set, val_set, learning_rate=0.001, epochs=10, layers="heads")

- Each replica gets ``IMAGES_PER_GPU`` images of a step, so the global batch is ``IMAGES_PER_GPU`` x replicas, and
  the losses are means over the global batch (:mod:`mrcnn.losses`): a step on R replicas is the step one device
  would take on the whole batch.
- ``"multiworker"`` (``tf.distribute.MultiWorkerMirroredStrategy``) spans processes or machines described by the
  ``TF_CONFIG`` environment variable; every worker reads its own slice of each step's images
  (:func:`input_shard`), so no image is read twice in an epoch, and only the chief (:func:`is_chief`) writes
  checkpoints and TensorBoard logs.
- A worker that dies makes the others fail within a bounded time instead of waiting for it for ever: every
  collective operation (the gradient all-reduce) has a timeout (:data:`DEFAULT_COLLECTIVE_TIMEOUT`), and
  TensorFlow's own peer health check aborts the collectives when a peer stops answering.
"""

from __future__ import annotations

import importlib
import json
import logging
import os

import numpy as np
import tensorflow as tf
# keras.utils.PyDataset is public; its adapter is not, but Model.fit accepts any DataAdapter instance as data.
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

__all__ = ["STRATEGIES", "DEFAULT_COLLECTIVE_TIMEOUT", "make_strategy", "is_chief", "input_shard",
           "is_multi_worker", "num_replicas", "replica_batch", "shared_seed", "ReplicaBatches", "WorkerFailedError",
           "worker_failure_message"]

logger = logging.getLogger(__name__)

#: The ``--strategy`` choices of the training command.
STRATEGIES = ("default", "mirrored", "multiworker")

#: Seconds a collective operation (the gradient all-reduce of a step) may wait for the other workers before it
#: fails. It must be longer than the slowest step, the first one included (it traces the step function).
DEFAULT_COLLECTIVE_TIMEOUT = 600.0


class WorkerFailedError(RuntimeError):
    """Another worker of a multi-worker run stopped answering (died, or was killed); the run cannot go on."""


def worker_failure_message(error: Exception) -> str:
    """The one-line message of :class:`WorkerFailedError` for TensorFlow's ``error`` (an aborted collective)."""
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines() if line.strip()]
    cause = next((line for line in lines if "aborted" in line or "unhealthy" in line or "down" in line),
                 lines[0] if lines else type(error).__name__)
    return (f"another worker of the multi-worker run stopped answering (it died, was killed or lost the network), "
            f"so this one stops too; restart every worker to go on from the last checkpoint. TensorFlow: {cause}")


def _gpus() -> list:
    return tf.config.list_physical_devices("GPU")


def make_strategy(name: str | None = None, collective_timeout: float | None = DEFAULT_COLLECTIVE_TIMEOUT,
                  health_check: tuple[float, float, int] | None = None) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy to build and train a model in.

    Create it at the start of the program: ``"multiworker"`` configures TensorFlow's collective operations, which
    must happen before TensorFlow runs anything.

    Args:
        name: ``"default"`` (one device: TensorFlow's default strategy), ``"mirrored"`` (every visible GPU of this
            machine, or the CPU when there is none), ``"multiworker"`` (the workers of ``TF_CONFIG``, each with its
            visible GPUs or its CPU), or None: ``"mirrored"`` when several GPUs are visible, else ``"default"``.
        collective_timeout: seconds a collective operation may wait for the other replicas before it fails
            (``"mirrored"`` and ``"multiworker"``); None waits for ever.
        health_check: ``"multiworker"`` only: (interval, timeout, attempts) of TensorFlow's peer health check
            (default 30 s, 10 s, 3): a peer that fails ``attempts`` checks in a row aborts every collective
            operation. None keeps TensorFlow's values.

    Raises:
        ValueError: an unknown name, or ``"multiworker"`` without a usable ``TF_CONFIG``.
    """
    if name is None:
        name = "mirrored" if len(_gpus()) > 1 else "default"
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}")
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if _gpus():
            return tf.distribute.MirroredStrategy()
        # Every logical CPU device (tf.config.set_logical_device_configuration), one replica each.
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    _check_tf_config()
    if health_check is not None:
        interval, timeout, attempts = health_check
        # TensorFlow offers no argument for the health check: its settings are attributes of the strategy's
        # implementation class, read when the strategy starts its checking thread, so they are set around the
        # construction only.
        extended = importlib.import_module(tf.distribute.MultiWorkerMirroredStrategy.__module__)
        extended = extended.CollectiveAllReduceExtended
        names = ("_check_health_interval", "_check_health_timeout", "_check_health_retry_limit")
        saved = {n: getattr(extended, n) for n in names}
        for n, value in zip(names, (float(interval), float(timeout), int(attempts))):
            setattr(extended, n, value)
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
            # The running thread reads them on the instance.
            for n, value in zip(names, (float(interval), float(timeout), int(attempts))):
                setattr(strategy.extended, n, value)
        finally:
            for n, value in saved.items():
                setattr(extended, n, value)
        return strategy
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _check_tf_config() -> None:
    """A clear error for a missing or malformed ``TF_CONFIG`` (TensorFlow would quietly train on one worker)."""
    text = os.environ.get("TF_CONFIG")
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not text:
        raise ValueError(f"--strategy multiworker needs the TF_CONFIG environment variable, e.g. {example}")
    try:
        spec = json.loads(text)
        workers = spec["cluster"]["worker"]
        task = spec["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not a cluster description ({error}); expected e.g. {example}") from None
    jobs = spec["cluster"]
    if kind not in jobs or not 0 <= index < len(jobs[kind]):
        raise ValueError(f"TF_CONFIG: task {kind}:{index} is not in the cluster {sorted(jobs)} "
                         f"({len(jobs.get(kind, []))} {kind} address(es))")
    if not workers and "chief" not in jobs:
        raise ValueError("TF_CONFIG: the cluster has no worker")


def num_replicas(strategy: tf.distribute.Strategy | None = None) -> int:
    """Replicas in sync (all workers together)."""
    return int((strategy or tf.distribute.get_strategy()).num_replicas_in_sync)


def _resolver(strategy):
    return getattr(strategy, "cluster_resolver", None)


def _task(strategy) -> tuple[str | None, int]:
    resolver = _resolver(strategy)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run's files: the only process of a one-machine run, else the ``chief``
    task of ``TF_CONFIG``, or worker 0 of a cluster without one."""
    strategy = strategy or tf.distribute.get_strategy()
    kind, index = _task(strategy)
    if kind is None:
        return True
    if kind == "chief":
        return True
    has_chief = "chief" in _resolver(strategy).cluster_spec().as_dict()
    return kind == "worker" and index == 0 and not has_chief


def is_multi_worker(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether ``strategy`` spans several processes (a ``TF_CONFIG`` cluster of more than one task)."""
    return input_shard(strategy)[1] > 1


def input_shard(strategy: tf.distribute.Strategy | None = None) -> tuple[int, int]:
    """(index, count) of this process's input pipeline: which slice of each step's images it reads."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = _resolver(strategy)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0, 1
    spec = resolver.cluster_spec().as_dict()
    kinds = [k for k in ("chief", "worker") if k in spec]
    tasks = [(k, i) for k in kinds for i in range(len(spec[k]))]
    return tasks.index((resolver.task_type, int(resolver.task_id or 0))), len(tasks)


def shared_seed(strategy: tf.distribute.Strategy, seed: int | None) -> int:
    """``seed``, or without one a random seed drawn by the chief, the same on every worker (the workers must agree
    on the image order to read disjoint slices of it)."""
    if seed is not None:
        return int(seed)
    drawn = int(np.random.default_rng().integers(1, 1 << 31))
    if input_shard(strategy)[1] == 1:
        return drawn
    value = float(drawn) if is_chief(strategy) else 0.0

    def contribution():
        first = tf.distribute.get_replica_context().replica_id_in_sync_group == 0
        return tf.where(first, tf.constant(value, tf.float64), tf.constant(0.0, tf.float64))

    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(contribution), axis=None)
    return int(total.numpy())


class ReplicaBatches(PyDatasetAdapter):
    """What ``Model.fit`` reads from a :class:`keras.utils.PyDataset` under a strategy of several replicas.

    Each item of the PyDataset is this process's images of one step (``per_replica`` x its local replicas); they
    are split into one batch of ``per_replica`` images per local replica, in order (replica 0 the first ones).
    The input is not sharded again: under ``"multiworker"`` each worker's PyDataset already holds its own images
    (:func:`input_shard`), where TensorFlow's own sharding would have every worker load every image and keep a
    part.

    Args:
        py_dataset: the PyDataset (its workers, queue and ``on_epoch_end`` work as with a plain ``fit``).
        strategy: the model's strategy.
        per_replica: images per replica and step.
    """

    def __init__(self, py_dataset, strategy: tf.distribute.Strategy, per_replica: int):
        super().__init__(py_dataset, shuffle=False)
        self.strategy = strategy
        self.per_replica = int(per_replica)

    def get_tf_dataset(self):
        strategy = self.strategy
        if strategy.num_replicas_in_sync == 1:
            return super().get_tf_dataset()
        per_replica = self.per_replica

        def replica_batches(context: tf.distribute.InputContext):
            # [local batch, ...] items -> [per_replica, ...] batches, one for each local replica in turn.
            return super(ReplicaBatches, self).get_tf_dataset().unbatch().batch(per_replica, drop_remainder=True)

        return strategy.distribute_datasets_from_function(replica_batches)


def replica_batch(strategy: tf.distribute.Strategy, config) -> tuple[int, tuple[int, int]]:
    """(images per replica and step, :func:`input_shard`) for training ``config`` under ``strategy``.

    With one replica, a step has ``BATCH_SIZE`` images (``IMAGES_PER_GPU`` x ``GPU_COUNT``, as in matterport's
    config); with several, each replica gets ``IMAGES_PER_GPU`` images and ``GPU_COUNT`` is not used (the replicas
    are the strategy's devices).
    """
    replicas = num_replicas(strategy)
    if replicas == 1:
        return int(config.BATCH_SIZE), (0, 1)
    if int(config.GPU_COUNT) not in (1, replicas):
        logger.warning("GPU_COUNT = %d is not used: the strategy has %d replicas, each with IMAGES_PER_GPU = %d "
                       "images", config.GPU_COUNT, replicas, config.IMAGES_PER_GPU)
    return int(config.IMAGES_PER_GPU), input_shard(strategy)
