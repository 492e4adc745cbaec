"""fedfrontier's Python API: the privacy-utility frontier of federated learning with differential privacy.

    import fedfrontier as ff

    rounds = ff.run("experiments/configs/frontier.toml", server={"rounds": 3})   # one training: a DataFrame
    result = ff.sweep("experiments/configs/frontier.toml")                        # the frontier sweep (Ray Tune)
    result.best[["server.target_epsilon", "val_accuracy", "test_accuracy"]]       # chosen on validation
    ff.plan("experiments/configs/mnist_devices.toml")                            # every epsilon, no training

Each call starts a private local Ray and stops it at the end, or attaches to the Ray this process is
connected to (``ray.init`` in a notebook) or to ``RAY_ADDRESS``. The ``fedfrontier`` command and
``python -m experiments.frontier`` (for ``ray job submit``) run the same jobs (orchestrator/jobs.py).
"""

from fedfrontier.api import SweepResult, load_config, plan, run, sweep

__all__ = ["load_config", "run", "sweep", "plan", "SweepResult"]
