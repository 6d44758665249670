"""Strategy plugin `baremetal_linear`: Ansible's own linear strategy, run over Mitogen's connection layer.

Every Ansible task runs its module in a fresh Python on the node, which unpacks and imports the module and
Ansible's module_utils again (about 0.16 s of the node's CPU per task on a lab node); Mitogen keeps one
interpreter per node and reuses what it imported. The drift check (playbooks/drift.yml: about 90 check-mode tasks
per node) is where that matters, so its entry points (make lab, scripts/nightly-watch.sh, benchmarks/drift.py)
select this strategy with ANSIBLE_STRATEGY=baremetal_linear; converges keep Ansible's default.

It also loads the filter and test plugins once in the controller's main process before the workers fork (see
warm_jinja_plugins): ansible-core loaded them again in every worker, one per task and host.

The task order and results are those of `linear`. Set BAREMETAL_MITOGEN=0 to run plain `linear` under this name
(e.g. to compare, or where Mitogen misbehaves); without Mitogen installed it says so once and runs plain
`linear` too. Mitogen is a dependency in pyproject.toml (0.3.54 supports ansible-core 2.19).
"""

from __future__ import annotations

import os

from ansible.plugins.loader import filter_loader, test_loader
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


def warm_jinja_plugins() -> None:
    """Load the filter and test plugins in this (the controller's main) process, before it forks a worker.

    ansible-core loads every non-collection filter/test plugin file (its own and each role's filter_plugins/) the
    first time a template in a process uses a filter or test, and a linear run forks a fresh worker per task and
    host, so each worker loaded and, where no bytecode was cached, compiled them again: about a fifth of a drift
    run's worker time. Loaded here once, the workers inherit them. ansible-core empties this cache itself when a
    role adds a plugin directory (include_role), so it is checked before every task.
    """
    for loader in (filter_loader, test_loader):
        ensure = getattr(loader, "_ensure_non_collection_wrappers", None)
        if ensure is not None:
            ensure()
        else:  # another ansible-core: all() fills the same cache
            for _ in loader.all():
                pass


class _WarmJinjaPlugins:
    def _queue_task(self, host, task, task_vars, play_context):
        warm_jinja_plugins()
        return super()._queue_task(host, task, task_vars, play_context)


if MITOGEN_REASON:
    _display.warning(f"baremetal_linear: {MITOGEN_REASON}: running Ansible's plain linear strategy")

    class StrategyModule(_WarmJinjaPlugins, _Linear):
        pass

else:
    _MitogenLinear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(_WarmJinjaPlugins, ansible_mitogen.strategy.StrategyMixin, _MitogenLinear):
        pass
