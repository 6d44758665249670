"""The GPU catalog (``data/gpus.yml``) and the built-in model shapes (``data/models.yml``)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from baremetal_ai.errors import UserError

DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Gpu:
    id: str
    name: str
    memory_gb: float
    usable_gib: float
    bandwidth_tbps: float
    bf16_dense_tflops: float
    pcie_only: bool
    gpus_per_node: int
    interconnect: str
    source: str
    declare_model: str = ""  # the declare stage's baremetal:gpuModel spelling
    aliases: tuple[str, ...] = ()


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9.]", "", text.lower())


@functools.cache
def catalog() -> tuple[Gpu, ...]:
    raw = yaml.safe_load((DATA / "gpus.yml").read_text(encoding="utf-8"))
    return tuple(Gpu(id=g["id"], name=g["name"], memory_gb=g["memory_gb"], usable_gib=g["usable_gib"],
                     bandwidth_tbps=g["bandwidth_tbps"], bf16_dense_tflops=g["bf16_dense_tflops"],
                     pcie_only=g["pcie_only"], gpus_per_node=g["gpus_per_node"], interconnect=g["interconnect"],
                     source=g["source"], declare_model=g["declare_model"], aliases=tuple(g.get("aliases", ())))
                 for g in raw["gpus"])


def find_gpu(name: str) -> Gpu:
    """Look a GPU up by id, name or alias, ignoring case, spaces, dashes and underscores."""
    want = _key(name)
    for gpu in catalog():
        if want in {_key(gpu.id), _key(gpu.name), *(_key(a) for a in gpu.aliases)}:
            return gpu
    raise UserError(f"--gpu: unknown GPU {name!r} (known: {', '.join(g.id for g in catalog())})")


@functools.cache
def builtin_models() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((DATA / "models.yml").read_text(encoding="utf-8"))["models"]


def find_model(name: str) -> tuple[str, dict[str, Any]]:
    models = builtin_models()
    want = _key(name)
    for key, entry in models.items():
        if want in (_key(key), _key(entry.get("repo", "")), _key(entry.get("repo", "").split("/")[-1])):
            return key, entry
    raise UserError(f"--model: unknown model {name!r} (built in: {', '.join(models)}; or use --config)")
