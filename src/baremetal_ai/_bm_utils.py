"""The repository's Ansible `module_utils/` and `library/` code, importable from the package.

The parsers and the validation core live once, in `module_utils/` (they are shipped to the nodes by Ansible), and
the modules' pure judging functions in `library/`. `baremetal inspect` must use exactly that code, not a copy.

Choice: the repository's `module_utils/` directory is appended to the `ansible.module_utils` package path, so
that `ansible.module_utils.bm_parsers` is the same module object for inspect and for the library modules it loads
(one `ParseError` class, not two). ansible-core is a dependency of this package, so the import always works.
The repository root is `BAREMETAL_AI_ROOT` when set, else found relative to this file (src/baremetal_ai/ ->
repository root), which holds for a source checkout and an editable install.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from baremetal_ai.errors import UserError


def repo_root() -> Path:
    env = os.environ.get("BAREMETAL_AI_ROOT")
    root = Path(env) if env else Path(__file__).resolve().parents[2]
    if not (root / "module_utils" / "bm_parsers.py").is_file():
        raise UserError(f"cannot find module_utils/bm_parsers.py under {root}: set BAREMETAL_AI_ROOT to the "
                        "baremetal-ai checkout")
    return root


def _wire() -> Path:
    root = repo_root()
    import ansible.module_utils as amu

    path = str(root / "module_utils")
    if path not in amu.__path__:
        amu.__path__.append(path)
    return root


ROOT = _wire()
bm_parsers = importlib.import_module("ansible.module_utils.bm_parsers")
bm_validation = importlib.import_module("ansible.module_utils.bm_validation")


def library_module(name: str) -> ModuleType:
    """A module from the repository's library/ (e.g. gpu_health), imported for its pure functions."""
    key = f"_baremetal_library_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, ROOT / "library" / f"{name}.py")
    if spec is None or spec.loader is None:  # pragma: no cover
        raise UserError(f"cannot load library/{name}.py from {ROOT}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod
    spec.loader.exec_module(mod)
    return mod
