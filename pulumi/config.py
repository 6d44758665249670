"""Stack configuration of the declare stage: re-exports the typed loader from baremetal_ai.declare.config.

Keys, types and defaults are documented there and in README.md; validation errors name the key and the fix.
"""

from baremetal_ai.declare.config import (
    GPU_SHAPES,
    BmcCredentials,
    ClusterConfig,
    ConfigError,
    OciConfig,
    RedfishNode,
    from_dict,
    load,
)

__all__ = ["GPU_SHAPES", "BmcCredentials", "ClusterConfig", "ConfigError", "OciConfig", "RedfishNode",
           "from_dict", "load"]
