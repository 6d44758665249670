"""plugins/strategy/baremetal_linear.py: the drift check's strategy runs modules over Mitogen, and is Ansible's plain
linear strategy with BAREMETAL_MITOGEN=0. Proven by where a module's child process comes from: under Mitogen its
parent is Mitogen's persistent interpreter (`python3(mitogen:...)`), under plain Ansible a fresh AnsiballZ file.
Also: its workers inherit the filter plugins the main process loaded (a probe plugin records each process that
loads it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  connection: local
  become: false
  tasks:
    - ansible.builtin.shell: "tr '\\\\0' ' ' < /proc/$PPID/cmdline"
      register: parent
      changed_when: false
    - ansible.builtin.debug:
        msg: "PARENT={{ parent.stdout }}"
"""


def run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    pb = tmp_path / "pb.yml"
    pb.write_text(PLAYBOOK)
    e = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_STRATEGY": "baremetal_linear",
         "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "ANSIBLE_FORCE_COLOR": "0", **env}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(pb)], cwd=ROOT, env=e,
                          capture_output=True, text=True, check=False, timeout=120)


def test_modules_run_in_mitogens_interpreter(tmp_path):
    p = run(tmp_path, BAREMETAL_MITOGEN="1")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PARENT=" in p.stdout and "(mitogen:" in p.stdout, p.stdout
    assert "plain linear" not in p.stderr


def test_baremetal_mitogen_0_is_plain_linear_and_says_so(tmp_path):
    p = run(tmp_path, BAREMETAL_MITOGEN="0")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "AnsiballZ_" in p.stdout and "(mitogen:" not in p.stdout, p.stdout
    assert "BAREMETAL_MITOGEN=0: running Ansible's plain linear strategy" in p.stderr


FILTER = """
import os
with open(os.environ["BMAI_FILTER_LOADS"], "a") as f:
    f.write(f"{os.getpid()}\\n")


class FilterModule:
    def filters(self):
        return {"bmai_twice": lambda v: v * 2}
"""

THREE_TASKS = """
- hosts: localhost
  gather_facts: false
  connection: local
  become: false
  tasks:
    - ansible.builtin.debug:
        msg: "{{ 1 | bmai_twice }}"
    - ansible.builtin.debug:
        msg: "{{ 2 | bmai_twice }}"
    - ansible.builtin.assert:
        that: (3 | bmai_twice) == 6
"""


def filter_loads(tmp_path: Path, strategy: str) -> list[str]:
    """The PIDs of the processes that loaded a filter plugin file during a 3-task run."""
    plugins = tmp_path / strategy / "filter"
    plugins.mkdir(parents=True)
    (plugins / "bmai_probe.py").write_text(FILTER)
    loads = tmp_path / strategy / "loads"
    pb = tmp_path / strategy / "pb.yml"
    pb.write_text(THREE_TASKS)
    e = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_STRATEGY": strategy,
         "ANSIBLE_FILTER_PLUGINS": f"{plugins}:{ROOT / 'plugins' / 'filter'}", "BMAI_FILTER_LOADS": str(loads),
         "ANSIBLE_LOCAL_TEMP": str(tmp_path / strategy / "tmp"), "ANSIBLE_FORCE_COLOR": "0"}
    p = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(pb)], cwd=ROOT, env=e,
                       capture_output=True, text=True, check=False, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "msg: 2" in p.stdout and "msg: 4" in p.stdout, p.stdout
    return loads.read_text().split()


def test_workers_inherit_the_filter_plugins_loaded_once(tmp_path):
    # ansible-core's linear strategy: every forked worker loads every filter plugin file again (here 3 workers)
    plain = filter_loads(tmp_path, "linear")
    assert len(set(plain)) >= 3, plain
    # baremetal_linear loads them in the controller's main process before forking: one load, inherited
    ours = filter_loads(tmp_path, "baremetal_linear")
    assert len(ours) == 1, ours
