"""Parameter counts: from a size ("70B") or from a Hugging Face-style ``config.json``.

Counting convention (docs/planner.md §1, from the planner reference §1): per decoder layer
attention ``h·n_q·d + 2·h·n_kv·d + n_q·d·h`` (+ Qwen2 q/k/v biases ``n_q·d + 2·n_kv·d``), gated MLP ``3·h·I``,
RMSNorms ``2·h``; MoE layers hold all ``E`` experts (``E·3·h·I_e``) plus a router ``h·E``; the whole model adds
``V·h`` embeddings (twice when the output head is not tied) and the final norm ``h``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baremetal_ai.errors import UserError, read_user_file

# Families whose counts the reference checks against published numbers; others are counted the same way, with a note.
VERIFIED_FAMILIES = ("llama", "mistral", "mixtral", "qwen2")
SUPPORTED_FAMILIES = (*VERIFIED_FAMILIES, "qwen2_moe", "qwen3")
# Multi-head latent attention changes the attention and KV-cache formulas; counting it as GQA would be wrong.
UNSUPPORTED_FAMILIES = {
    "deepseek_v2": "multi-head latent attention (MLA) is not modelled",
    "deepseek_v3": "multi-head latent attention (MLA) is not modelled",
}

_SUFFIX = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


@dataclass(frozen=True)
class ModelShape:
    """What the memory formulas need to know about a decoder-only transformer."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    num_experts: int = 0  # 0 = dense
    experts_per_token: int = 0
    expert_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    shared_expert_gate: bool = False
    moe_layers: int = 0  # how many of num_layers are MoE (the rest dense)
    model_type: str = "llama"
    name: str = ""


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of one model (all integers, exact for the formula)."""

    total: int
    active: int  # per token (MoE: top-k experts); equals total for dense models
    embedding: int  # input embeddings + untied output head
    linear: int  # weights of all Linear layers inside the decoder layers (what GPTQ/AWQ quantize)
    per_layer: int  # one dense layer (first layer kind for MoE)
    attention_per_layer: int
    mlp_per_layer: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding


def parse_size(text: str | float | int) -> int:
    """``"70B"`` → 70_000_000_000; also ``"7.5b"``, ``"350M"``, ``"1.5T"``, plain numbers. Must be > 0."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtT]?)\s*", str(text))
        if not m:
            raise UserError(f"--params: cannot read {text!r} as a parameter count (examples: 70B, 7.5B, 350M, 1.2e9)")
        value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not math.isfinite(value) or value < 1:
        raise UserError(f"--params: must be a positive parameter count, got {text!r}")
    return round(value)


def _field(cfg: dict[str, Any], key: str, source: str, *, required: bool = True, default: Any = None) -> Any:
    value = cfg.get(key)
    if value is None:
        if required:
            raise UserError(f'{source} is missing "{key}"')
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f'{source}: "{key}" must be a positive integer, got {value!r}')
    if value <= 0:
        raise UserError(f'{source}: "{key}" must be a positive integer, got {value}')
    return value


def shape_from_config(cfg: dict[str, Any], source: str = "config.json") -> tuple[ModelShape, tuple[str, ...]]:
    """Read the fields the planner needs; a missing or bad one raises one UserError naming it."""
    if not isinstance(cfg, dict):
        raise UserError(f"{source}: expected a JSON object")
    notes: list[str] = []
    if "hidden_size" not in cfg and isinstance(cfg.get("text_config"), dict):
        notes.append(f"{source}: using its text_config (multimodal wrapper); vision tower not counted")
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type", cfg.get("model_type"))}
    model_type = str(cfg.get("model_type") or "llama")
    if model_type in UNSUPPORTED_FAMILIES:
        raise UserError(f"{source}: model_type {model_type!r} is not supported: {UNSUPPORTED_FAMILIES[model_type]}")
    if model_type not in SUPPORTED_FAMILIES:
        notes.append(f"model_type {model_type!r} is not a verified family ({', '.join(VERIFIED_FAMILIES)}); "
                     "counted as a Llama-style decoder")
    h = _field(cfg, "hidden_size", source)
    n_layers = _field(cfg, "num_hidden_layers", source)
    n_q = _field(cfg, "num_attention_heads", source)
    n_kv = _field(cfg, "num_key_value_heads", source, required=False, default=n_q)
    vocab = _field(cfg, "vocab_size", source)
    head_dim = _field(cfg, "head_dim", source, required=False)
    if head_dim is None:
        if h % n_q:
            raise UserError(f'{source}: "hidden_size" {h} is not divisible by "num_attention_heads" {n_q}; '
                            'add "head_dim"')
        head_dim = h // n_q
    if n_q % n_kv:
        raise UserError(f'{source}: "num_attention_heads" {n_q} is not a multiple of "num_key_value_heads" {n_kv}')

    n_experts = 0
    for key in ("num_local_experts", "num_experts", "n_routed_experts"):
        if cfg.get(key):
            n_experts = _field(cfg, key, source)
            break
    moe: dict[str, Any] = {}
    if n_experts:
        top_k = _field(cfg, "num_experts_per_tok", source)
        if top_k > n_experts:
            raise UserError(f'{source}: "num_experts_per_tok" {top_k} exceeds the number of experts {n_experts}')
        if model_type == "qwen2_moe":
            i_expert = _field(cfg, "moe_intermediate_size", source)
            shared = _field(cfg, "shared_expert_intermediate_size", source, required=False, default=0)
            sparse_step = _field(cfg, "decoder_sparse_step", source, required=False, default=1)
            dense_only = set(cfg.get("mlp_only_layers") or [])
            moe_layers = sum(1 for i in range(n_layers) if i not in dense_only and (i + 1) % sparse_step == 0)
            moe = {"expert_intermediate_size": i_expert, "shared_expert_intermediate_size": shared,
                   "shared_expert_gate": bool(shared), "moe_layers": moe_layers}
        else:  # Mixtral: every layer MoE, experts are intermediate_size wide
            moe = {"expert_intermediate_size": _field(cfg, "intermediate_size", source), "moe_layers": n_layers}
        moe.update(num_experts=n_experts, experts_per_token=top_k)
    dense_layers = n_layers - moe.get("moe_layers", 0)
    inter = _field(cfg, "intermediate_size", source, required=dense_layers > 0, default=0)

    shape = ModelShape(
        hidden_size=h, num_layers=n_layers, num_heads=n_q, num_kv_heads=n_kv, head_dim=head_dim,
        intermediate_size=inter, vocab_size=vocab,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=model_type in ("qwen2", "qwen2_moe") or bool(cfg.get("attention_bias", False)),
        o_bias=model_type not in ("qwen2", "qwen2_moe") and bool(cfg.get("attention_bias", False)),
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        qk_norm=model_type == "qwen3",
        model_type=model_type, name=str(cfg.get("_name_or_path") or cfg.get("name") or ""), **moe)
    return shape, tuple(notes)


def load_config(path: str | Path) -> tuple[ModelShape, tuple[str, ...]]:
    """Read a ``config.json`` file; errors name the file and the field."""
    p = Path(path)
    text = read_user_file("--config", p)
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--config: {p} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    shape, notes = shape_from_config(cfg, source=str(p))
    if not shape.name:
        shape = ModelShape(**{**shape.__dict__, "name": p.parent.name or p.name})
    return shape, notes


def count_params(shape: ModelShape) -> ParamCount:
    """Exact count for the formula in the module docstring."""
    h, n_q, n_kv, d = shape.hidden_size, shape.num_heads, shape.num_kv_heads, shape.head_dim
    attn_w = h * n_q * d + 2 * h * n_kv * d + n_q * d * h
    attn = attn_w
    if shape.qkv_bias:
        attn += n_q * d + 2 * n_kv * d
    if shape.o_bias:
        attn += h
    if shape.qk_norm:
        attn += 2 * d
    norms = 2 * h

    def gated(i: int) -> tuple[int, int]:  # (weights, weights + biases)
        w = 3 * h * i
        return w, w + (2 * i + h if shape.mlp_bias else 0)

    dense_w, dense_mlp = gated(shape.intermediate_size)
    n_moe = shape.moe_layers if shape.num_experts else 0
    n_dense = shape.num_layers - n_moe
    total_layers = n_dense * (attn + dense_mlp + norms)
    active_layers = total_layers
    linear = n_dense * (attn_w + dense_w)
    moe_mlp = 0
    if n_moe:
        e_w, e_all = gated(shape.expert_intermediate_size)
        s_w, s_all = gated(shape.shared_expert_intermediate_size) if shape.shared_expert_intermediate_size else (0, 0)
        router = h * shape.num_experts
        gate = h if shape.shared_expert_gate else 0
        moe_mlp = shape.num_experts * e_all + router + s_all + gate
        moe_active = shape.experts_per_token * e_all + router + s_all + gate
        total_layers += n_moe * (attn + moe_mlp + norms)
        active_layers += n_moe * (attn + moe_active + norms)
        linear += n_moe * (attn_w + shape.num_experts * e_w + s_w)
    embedding = shape.vocab_size * h * (1 if shape.tie_word_embeddings else 2)
    total = total_layers + embedding + h
    active = active_layers + embedding + h
    first_mlp = dense_mlp if n_dense else moe_mlp
    return ParamCount(total=total, active=active, embedding=embedding, linear=linear,
                      per_layer=attn + first_mlp + norms, attention_per_layer=attn, mlp_per_layer=first_mlp)


def format_count(n: int) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{suffix}"
    return str(n)
