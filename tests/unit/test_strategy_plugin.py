"""plugins/strategy/baremetal_linear.py: the drift check's strategy runs modules over Mitogen, and is Ansible's plain
linear strategy with BAREMETAL_MITOGEN=0. Proven by where a module's child process comes from: under Mitogen its
parent is Mitogen's persistent interpreter (`python3(mitogen:...)`), under plain Ansible a fresh AnsiballZ file."""

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
