"""Strategy plugin `baremetal_linear`: Ansible's own linear strategy, run over Mitogen's connection layer.

Every Ansible task runs its module in a fresh Python on the node, which unpacks and imports the module and
Ansible's module_utils again (about 0.16 s of the node's CPU per task on a lab node); Mitogen keeps one
interpreter per node and reuses what it imported. The drift check (playbooks/drift.yml: about 90 check-mode tasks
per node) is where that matters, so its entry points (make lab, scripts/nightly-watch.sh, benchmarks/drift.py)
select this strategy with ANSIBLE_STRATEGY=baremetal_linear; converges keep Ansible's default.

The task order and results are those of `linear`. Set BAREMETAL_MITOGEN=0 to run plain `linear` under this name
(e.g. to compare, or where Mitogen misbehaves); without Mitogen installed it says so once and runs plain
`linear` too. Mitogen is a dependency in pyproject.toml (0.3.54 supports ansible-core 2.19).
"""

from __future__ import annotations

import os

from ansible.plugins.strategy.linear import StrategyModule as _Linear
from ansible.utils.display import Display

DOCUMENTATION = """
name: baremetal_linear
short_description: linear strategy over Mitogen's connection layer (plain linear with BAREMETAL_MITOGEN=0)
description:
  - Runs tasks exactly as the C(linear) strategy does; when Mitogen (the C(mitogen) package) is installed and
    C(BAREMETAL_MITOGEN) is not C(0), connections and module runs go through Mitogen.
author: baremetal-ai
"""

_display = Display()
MITOGEN_REASON = ""

if os.environ.get("BAREMETAL_MITOGEN", "1") == "0":
    MITOGEN_REASON = "BAREMETAL_MITOGEN=0"
else:
    try:
        import ansible_mitogen.loaders
        import ansible_mitogen.strategy
    except ImportError as exc:  # not installed (or too old/new for this ansible-core)
        MITOGEN_REASON = f"Mitogen is not importable ({exc})"

if MITOGEN_REASON:
    _display.warning(f"baremetal_linear: {MITOGEN_REASON}: running Ansible's plain linear strategy")

    class StrategyModule(_Linear):
        pass

else:
    _MitogenLinear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _MitogenLinear):
        pass
