"""Distribution strategies and mixed precision for training, and agreement between workers.

``"mirrored"`` replicates over the local GPUs (or the logical CPU devices when there is none);
``"multi-worker"`` runs ``MultiWorkerMirroredStrategy`` across the hosts of ``TF_CONFIG``. Every
replica takes a slice of each planned batch, so a global batch gives the same gradient on any
number of replicas (up to batch-norm statistics, which are per replica). The chief writes the run
directory; the other workers write to a scratch directory.

A decision one worker takes alone (the time budget is spent) would leave the others waiting for it
in the next collective step forever, so such flags go through ``any_worker``: an all-reduce that
every worker calls at the same step.
"""

import functools
import os

import tensorflow as tf

from speechkit.errors import ConfigError

__all__ = ["STRATEGIES", "make_strategy", "is_chief", "multi_worker", "any_worker", "precision_policy"]

STRATEGIES = ("default", "mirrored", "multi-worker")


def make_strategy(name):
    """The ``tf.distribute`` strategy called ``name``; create it before any other TensorFlow op runs.

    Args:
        name: one of ``STRATEGIES``.

    Raises:
        ConfigError: an unknown name, or ``"multi-worker"`` without a ``TF_CONFIG`` environment variable.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}, received: {name!r}")
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("strategy 'multi-worker' needs the TF_CONFIG environment variable (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    return tf.distribute.get_strategy()


def _cluster(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, {}
    return resolver, resolver.cluster_spec().as_dict()


def multi_worker(strategy):
    """bool, whether ``strategy`` spans more than one worker process."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    _, cluster = _cluster(strategy)
    return sum(len(tasks) for job, tasks in cluster.items() if job in ("chief", "worker")) > 1


def is_chief(strategy):
    """bool, whether this process writes the run directory (the ``chief``, else worker 0)."""
    resolver, cluster = _cluster(strategy)
    if resolver is None or resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def any_worker(strategy, flag):
    """``flag`` or-ed over every worker: an all-reduce, so every worker must call it at the same point.

    Args:
        strategy: the ``tf.distribute`` strategy of the run.
        flag: bool, this worker's decision.

    Returns:
        bool, true when any worker's ``flag`` is true (``flag`` itself outside multi-worker training).
    """
    if not multi_worker(strategy):
        return bool(flag)
    agreed = _all_sum(strategy)(tf.constant(1.0 if flag else 0.0))
    return bool(strategy.experimental_local_results(agreed)[0].numpy() > 0)


@functools.lru_cache(maxsize=4)
def _all_sum(strategy):
    """A compiled all-reduce (sum over every replica of every worker) of a float32 scalar."""

    def replica_max(value):
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(value))

    return tf.function(lambda value: strategy.run(replica_max, args=(value,)))


def precision_policy(mixed_precision):
    """The Keras dtype policy name: bfloat16 compute on CPU, float16 (with loss scaling) on GPU."""
    if not mixed_precision:
        return "float32"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
