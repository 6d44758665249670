"""The Pulumi program of the declare stage, as a function: ``pulumi/__main__.py`` calls :func:`run`.

Why a function in the package rather than code in ``__main__.py``: tests call ``run(config)`` with a config
built from a dict under ``pulumi.runtime.set_mocks``, and the same code runs under ``pulumi up``.
"""

from __future__ import annotations

import pulumi

from baremetal_ai.declare import config as config_mod
from baremetal_ai.declare.components import GpuCluster, GpuClusterArgs


def run(cfg: config_mod.ClusterConfig | None = None) -> GpuCluster:
    """Build the cluster and export its outputs. With no ``cfg``, read and validate the stack's config first,
    so a bad key stops the program before any resource is registered."""
    cfg = cfg if cfg is not None else config_mod.load()
    cluster = GpuCluster(cfg.name, GpuClusterArgs(config=cfg))
    pulumi.export("nodes", cluster.nodes)
    pulumi.export("nodes_schema_version", cluster.nodes_schema_version)
    pulumi.export("fabric", cluster.fabric_summary)
    return cluster
