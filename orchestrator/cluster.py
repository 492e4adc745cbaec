"""Connecting to Ray: attach to a running cluster, or start a private local one safely."""

from __future__ import annotations

import os


def ensure_ray(num_cpus: int | None = None) -> None:
    """Attach to ``RAY_ADDRESS`` (e.g. under ``ray job submit``) or start a local Ray bound to
    127.0.0.1 with no dashboard, so nothing listens beyond this machine."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
        return
    # address="local": always a fresh private instance, never a cluster some `ray start` left on this machine
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=True, configure_logging=True, logging_level="warning")
