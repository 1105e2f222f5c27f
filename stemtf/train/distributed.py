"""Training on several workers: the strategy (from ``TF_CONFIG``) and the loop Keras 3 cannot run under it.

``strategy="auto"`` is one machine (``MirroredStrategy`` over several GPUs, else the default
strategy) and trains with ``model.fit``. ``strategy="multi-worker"`` builds a
``tf.distribute.MultiWorkerMirroredStrategy`` from the ``TF_CONFIG`` environment variable (as
Kubernetes operators, indexed Jobs and Vertex AI set it). Keras 3's ``model.fit`` fails under that
strategy (a ``PerReplica`` conversion error, keras-team/keras#20585), so :func:`fit_loop` stands in
for it: it runs the compiled model's own ``train_step``/``test_step`` (the same loss, metrics,
optimizer and schedule) and drives the same Keras callbacks (the same checkpoints, history and
progress). Only the loop differs between the two paths.

Every worker calls :func:`stemtf.train.fit` with the same arguments, ``output_dir`` and ``data`` on
storage they all see; only the chief (the ``chief`` task, else worker 0) writes there. The strategy
must be the first TensorFlow work of the process, so call ``fit`` once per fresh process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from stemtf.errors import ClusterError, OptionError
from stemtf.options import DEFAULT_WORKER_TIMEOUT

STRATEGIES = ("auto", "multi-worker")

# What a lost or hung peer surfaces as in the survivors (gRPC, collective and coordination errors).
_LOST_WORKER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where this process stands in a training run.

    Attributes:
        strategy: The ``tf.distribute`` strategy to build and train the model under.
        num_workers: Processes training together (1 for ``auto``).
        worker_index: This process's place among them (its data shard), in ``[0, num_workers)``.
        is_chief: Whether this process writes the checkpoints and the model.
    """

    strategy: tf.distribute.Strategy
    num_workers: int = 1
    worker_index: int = 0
    is_chief: bool = True

    @property
    def multi_worker(self) -> bool:
        """Whether several processes train together (and the custom loop runs)."""
        return isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)


def read_tf_config(environ: Mapping[str, str] = os.environ) -> tuple[int, int, bool]:
    """``(num_workers, worker_index, is_chief)`` from ``TF_CONFIG``, checked before TensorFlow uses it.

    The chief is the ``chief`` task when the cluster has one (Vertex AI's first worker pool), else
    worker 0 (a Kubernetes indexed Job's or StatefulSet's pod 0).

    Raises:
        ClusterError: ``TF_CONFIG`` is missing, not JSON, or does not place this task in the cluster.
    """
    hint = 'e.g. {"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}'
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        raise ClusterError(f"{{option:strategy}} multi-worker needs the TF_CONFIG environment variable (the cluster and this task), {hint}.")
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ClusterError(f"TF_CONFIG is not valid JSON ({error.msg} at character {error.pos}); {hint}.") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ClusterError(f"TF_CONFIG needs a 'cluster' and a 'task' object; {hint}.")
    jobs = {name: cluster.get(name) or [] for name in ("chief", "worker")}
    unknown = sorted(set(cluster) - set(jobs))
    if unknown or not all(isinstance(hosts, list) for hosts in jobs.values()) or len(jobs["chief"]) > 1:
        raise ClusterError(
            f"TF_CONFIG's cluster must list 'worker' addresses (and at most one 'chief'); received jobs {sorted(cluster)}; {hint}."
        )
    task_type, index = task.get("type"), task.get("index")
    if task_type not in ("chief", "worker") or not isinstance(index, int) or not 0 <= index < len(jobs[task_type]):
        raise ClusterError(
            f"TF_CONFIG's task {task!r} is not in its cluster ({len(jobs['chief'])} chief, {len(jobs['worker'])} workers); {hint}."
        )
    num_workers = len(jobs["chief"]) + len(jobs["worker"])
    worker_index = index if task_type == "chief" else len(jobs["chief"]) + index
    return num_workers, worker_index, worker_index == 0


def make_cluster(strategy: str = "auto", *, worker_timeout: float = DEFAULT_WORKER_TIMEOUT) -> Cluster:
    """The strategy named by ``strategy`` and this process's place in it.

    Create it before any other TensorFlow work in the process: ``MultiWorkerMirroredStrategy``
    starts this worker's server and can only be made once per process.

    Args:
        strategy: ``auto`` (this machine's GPUs, or the default strategy) or ``multi-worker``
            (``TF_CONFIG``).
        worker_timeout: Seconds a collective operation may wait for the other workers before the
            run fails (a hung or unreachable peer); a worker that died fails it sooner.

    Raises:
        ClusterError: ``TF_CONFIG`` is missing or malformed.
        OptionError: an unknown ``strategy`` or a non-positive ``worker_timeout``.
    """
    if strategy not in STRATEGIES:
        raise OptionError("strategy", f"{{option}} must be one of {', '.join(STRATEGIES)}. Received {strategy!r}.")
    if not (math.isfinite(worker_timeout) and worker_timeout > 0):
        raise OptionError("worker_timeout", f"{{option}} must be a positive number of seconds. Received {worker_timeout!r}.")
    if strategy == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return Cluster(tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy())
    num_workers, worker_index, is_chief = read_tf_config()
    if _tensorflow_started():  # say so now, not after waiting for the peers
        raise ClusterError(_too_late("TensorFlow has already run here"))
    wait_for_workers(worker_addresses(), worker_index, timeout=worker_timeout)
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=worker_timeout)
    try:
        multi_worker = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as error:  # "Collective ops must be configured at program startup"
        raise ClusterError(_too_late(error)) from None
    return Cluster(multi_worker, num_workers, worker_index, is_chief)


def _too_late(reason: object) -> str:
    return (f"{{option:strategy}} multi-worker must start before TensorFlow runs anything else in the process ({reason}); "
            "train in a fresh process, once per process (as `stemtf train` does).")


def _tensorflow_started() -> bool:
    """Whether TensorFlow's eager context already exists in this process (an op has run), after which
    collective ops cannot be configured. TensorFlow has no public question for it; if its private
    attribute ever goes away, the answer is False and the strategy's own RuntimeError still says so."""
    from tensorflow.python.eager import context

    return bool(getattr(context.context(), "_initialized", False))


def worker_addresses(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The ``host:port`` of every task of ``TF_CONFIG`` (checked by :func:`read_tf_config`), chief first."""
    cluster = json.loads(environ["TF_CONFIG"])["cluster"]
    return [*(cluster.get("chief") or []), *(cluster.get("worker") or [])]


def wait_for_workers(addresses: Sequence[str], index: int, *, timeout: float, poll: float = 0.2) -> None:
    """Wait, in Python, until every other task of the cluster listens on its address.

    TensorFlow's own wait for the other workers (in ``MultiWorkerMirroredStrategy()``) holds the
    main thread and the GIL inside C++ with no time limit: a peer that never starts hung it for
    14 minutes, through ``worker_timeout``, SIGTERM and Ctrl-C. So every worker first listens on
    its own address (until its TensorFlow server takes the port over, which also answers) and
    connects to the others' until all answer; a signal stops this loop as it stops any Python code.

    Raises:
        ClusterError: some worker did not answer within ``timeout`` seconds.
    """
    own = addresses[index]
    with contextlib.closing(_listen(own)):
        deadline = time.monotonic() + timeout
        waiting = [address for position, address in enumerate(addresses) if position != index]
        while waiting:
            waiting = [address for address in waiting if not _answers(address)]
            if not waiting:
                return
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"Worker {index} of {len(addresses)} waited {timeout:g} s for the other workers of TF_CONFIG; "
                    f"{', '.join(waiting)} never answered. Start every worker (each with its own task in TF_CONFIG), "
                    "or wait longer with {option:worker_timeout}."
                )
            time.sleep(poll)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "localhost", int(port)


def _listen(address: str) -> socket.socket:
    """A listening socket on this task's port (all interfaces), which the TensorFlow server then takes over."""
    listener = socket.socket(socket.AF_INET6 if ":" in _split(address)[0] else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", _split(address)[1]))
        listener.listen(64)  # the kernel completes the others' connections; nothing needs accepting
    except OSError:
        listener.close()
        raise ClusterError(f"This worker cannot listen on {address} (TF_CONFIG's address of its task): the port is taken "
                           "or not this machine's.") from None
    return listener


def _answers(address: str) -> bool:
    try:
        with socket.create_connection(_split(address), timeout=1.0):
            return True
    except OSError:
        return False


DatasetsFn = Callable[[int, int, int], tuple[tf.data.Dataset, "tf.data.Dataset | None"]]


def fit_loop(
    cluster: Cluster,
    train_model: keras.Model,
    make_datasets: DatasetsFn,
    *,
    batch_size: int,
    steps_per_epoch: int,
    epochs: int,
    initial_epoch: int,
    callbacks: Sequence[keras.callbacks.Callback],
) -> None:
    """``train_model.fit`` for ``MultiWorkerMirroredStrategy``: the same steps, logs and callback calls.

    Every epoch resets the metrics, runs up to ``steps_per_epoch`` distributed ``train_step`` calls
    (fewer when a callback sets ``stop_training``), validates with ``test_step`` when there is
    validation data, and hands the logs (``loss``, ``val_loss``, ... averaged over the replicas)
    to the callbacks. Every worker runs every step, including the checkpoint writes (the chief's
    into the run directory): collective operations need all of them.

    Args:
        cluster: From :func:`make_cluster`.
        train_model: A model compiled under ``cluster.strategy``.
        make_datasets: ``(num_shards, shard_index, replica_batch_size) -> (train, validation or
            None)``: this worker's training shard and the validation data, both batched by
            ``replica_batch_size``.
        batch_size: Examples per step over all replicas (global).
        steps_per_epoch: Steps between two ``on_epoch_end`` calls (validation and checkpoint).
        epochs: As for ``keras.Model.fit``: the index the last epoch ends before.
        initial_epoch: The epoch to start at (a resumed run's).
        callbacks: Keras callbacks, called as ``fit`` calls them.

    Raises:
        ClusterError: another worker died or stopped answering.
    """
    strategy = cluster.strategy
    train_iterator, validation_data, validation_steps = _distribute(cluster, make_datasets, batch_size)
    train_step, test_step = _distributed_step(strategy, train_model.train_step), _distributed_step(strategy, train_model.test_step)
    with strategy.scope():
        # Optimizer slots are created here, under the strategy, not inside the first traced step.
        train_model.optimizer.build(train_model.trainable_variables)
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=train_model)
    train_model.stop_training = False
    step = int(train_model.optimizer.iterations.numpy())
    try:
        callback_list.on_train_begin()
        logs: dict[str, Any] = {}
        for epoch in range(initial_epoch, epochs):
            train_model.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            for batch in range(steps_per_epoch):
                callback_list.on_train_batch_begin(batch)
                logs = _numbers(train_step(train_iterator))
                step = int(train_model.optimizer.iterations.numpy())
                callback_list.on_train_batch_end(batch, logs)
                if train_model.stop_training:
                    break
            if validation_data is not None:
                train_model.reset_metrics()
                validation_iterator = iter(validation_data)
                validation_logs: dict[str, Any] = {}
                for _ in range(validation_steps):
                    validation_logs = _numbers(test_step(validation_iterator))
                logs.update({f"val_{name}": value for name, value in validation_logs.items()})
            callback_list.on_epoch_end(epoch, logs)
            if train_model.stop_training:
                break
        callback_list.on_train_end(logs)
    except _LOST_WORKER_ERRORS as error:
        raise ClusterError(
            f"Worker {cluster.worker_index} of {cluster.num_workers} lost the other workers after step {step} "
            f"({_reason(error)}); restart every worker with {{option:resume}} to continue from the last checkpoint."
        ) from None


def _distribute(
    cluster: Cluster, make_datasets: DatasetsFn, batch_size: int
) -> tuple[Any, tf.distribute.DistributedDataset | None, int]:
    """This worker's distributed training iterator, the distributed validation data (or None) and its steps.

    Every worker evaluates every crop (the set is small and fixed): averaging equal means over the
    replicas then gives the one-worker numbers, and no replica ever waits on an empty batch.
    """
    strategy = cluster.strategy
    replica_batch_size = batch_size // strategy.num_replicas_in_sync
    local_replicas = strategy.num_replicas_in_sync // cluster.num_workers

    def datasets(context: tf.distribute.InputContext) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
        return make_datasets(context.num_input_pipelines, context.input_pipeline_id, replica_batch_size)

    _, local_validation = make_datasets(cluster.num_workers, cluster.worker_index, replica_batch_size)
    train_iterator = iter(strategy.distribute_datasets_from_function(lambda context: datasets(context)[0]))
    if local_validation is None:
        return train_iterator, None, 0
    validation_data = strategy.distribute_datasets_from_function(lambda context: datasets(context)[1].repeat(local_replicas))
    return train_iterator, validation_data, int(local_validation.cardinality().numpy())


def _distributed_step(strategy: tf.distribute.Strategy, step_fn: Callable) -> Callable:
    """``step_fn`` (``train_step`` or ``test_step``) on every replica, its logs averaged over them."""

    @tf.function
    def run(iterator):
        logs = strategy.run(step_fn, args=(next(iterator),))
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}

    return run


def _numbers(logs: Mapping[str, tf.Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in logs.items()}


def _reason(error: tf.errors.OpError) -> str:
    """The informative line of a TensorFlow runtime error, shortened (its first line is often just 'Graph execution error:')."""
    # Graph-node annotations ({{function_node ...}}, [[...]]) say where in the graph, not what went wrong.
    text = re.sub(r"\{\{.*?\}\}|\[\[.*?\]\]", "", str(error.message))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for keyword in ("aborted by", "failed to connect", "heartbeat", "timed out", "timeout", "deadline", "unavailable"):
        for line in lines:
            if keyword in line.lower():
                return line if len(line) <= 160 else line[:159] + "…"
    return type(error).__name__
