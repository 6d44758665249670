"""GPU memory: weights, KV cache, activations, training states; tensor-parallel rules; the smallest layout that fits.

Pure functions over dataclasses. Bytes everywhere inside; GiB (2^30 B) only at the edges. The formulas and their
sources are in docs/planner.md (from the planner reference §2–§6, §8).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Literal

from baremetal_ai.errors import UserError
from baremetal_ai.planner.gpus import Gpu
from baremetal_ai.planner.params import ModelShape, ParamCount

GIB = 2**30
Workload = Literal["inference", "training", "finetune"]


# --------------------------------------------------------------------------------------------- precision
@dataclass(frozen=True)
class Precision:
    name: str
    bits: float  # bits per weight (quantized formats: average incl. scales/zeros)
    linear_only: bool = False  # only decoder Linear weights get `bits`; embeddings, head, norms stay 16-bit
    engine: str = "vllm"  # "llama.cpp" (GGUF) allocates what it needs: no 0.9 utilization rule
    source: str = ""


_NF4_DQ_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # = 4.127 bpw (QLoRA §3, blocksize 64, double quantization) [derived]
_W4G128_BITS = 4 + (16 + 4) / 128  # = 4.156 bpw: fp16 scale + 4-bit zero per group of 128 [derived]
_GGUF = "llama.cpp tools/quantize/README.md, Llama-3.1-8B table (bpw is model-dependent)"

PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", 32, source="4 B/param"),
    Precision("bf16", 16, source="2 B/param"),
    Precision("fp16", 16, source="2 B/param"),
    Precision("fp8", 8, source="1 B/param"),
    Precision("int8", 8, source="1 B/param"),
    Precision("fp4", 4, source="0.5 B/param (+ scales, not counted)"),
    Precision("int4", 4, source="0.5 B/param (+ scales, not counted; accelerate divides fp32 size by 8)"),
    Precision("gptq-w4g128", _W4G128_BITS, linear_only=True, source="AutoGPTQ packed layout, group 128"),
    Precision("awq-w4g128", _W4G128_BITS, linear_only=True, source="AutoAWQ packed layout, group 128"),
    Precision("nf4", 4.5, linear_only=True, source="bitsandbytes NF4, blocksize 64 (QLoRA §3)"),
    Precision("nf4-dq", _NF4_DQ_BITS, linear_only=True, source="bitsandbytes NF4 + double quantization (QLoRA §3)"),
    Precision("gguf-q2_k", 3.1593, engine="llama.cpp", source=_GGUF),
    Precision("gguf-iq4_xs", 4.4597, engine="llama.cpp", source=_GGUF),
    Precision("gguf-q4_k_s", 4.6672, engine="llama.cpp", source=_GGUF),
    Precision("gguf-q4_k_m", 4.8944, engine="llama.cpp", source=_GGUF),
    Precision("gguf-q5_k_m", 5.7036, engine="llama.cpp", source=_GGUF),
    Precision("gguf-q6_k", 6.5633, engine="llama.cpp", source=_GGUF),
    Precision("gguf-q8_0", 8.5008, engine="llama.cpp", source=_GGUF),
    Precision("gguf-f16", 16.0005, engine="llama.cpp", source=_GGUF),
)}
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "gptq": "gptq-w4g128",
            "awq": "awq-w4g128", "qlora": "nf4-dq", "nf4dq": "nf4-dq", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8"}
KV_PRECISIONS = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "int8": 1}


def get_precision(name: str, option: str = "--precision") -> Precision:
    """Names above, aliases, ``q4_k_m`` (= ``gguf-q4_k_m``) and ``exl2-<bpw>`` (2.0–8.0, 16-bit embeddings)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in PRECISIONS:
        return PRECISIONS[key]
    if f"gguf-{key}" in PRECISIONS:
        return PRECISIONS[f"gguf-{key}"]
    m = re.fullmatch(r"exl2[-:_]?([0-9]+(?:\.[0-9]+)?)", key)
    if m:
        bpw = float(m.group(1))
        if not 2.0 <= bpw <= 8.0:
            raise UserError(f"{option}: EXL2 target bpw must be between 2 and 8, got {bpw}")
        return Precision(f"exl2-{bpw:g}", bpw, linear_only=True, source="exllamav2 README: target average bpw")
    raise UserError(f"{option}: unknown precision {name!r} (known: {', '.join(PRECISIONS)}, exl2-<bpw>)")


def kv_bytes_per_elem(name: str) -> int:
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in KV_PRECISIONS:
        raise UserError(f"--kv-precision: unknown KV cache precision {name!r} (known: {', '.join(KV_PRECISIONS)})")
    return KV_PRECISIONS[key]


def weight_bytes(params: int, precision: Precision | str) -> float:
    """bytes = params × bits / 8 (reference §2), the whole model at one width."""
    p = get_precision(precision) if isinstance(precision, str) else precision
    return params * p.bits / 8


def model_weight_bytes(count: ParamCount, precision: Precision | str) -> float:
    """Like ``weight_bytes``, but formats that only quantize Linear layers keep the rest at 16 bit."""
    p = get_precision(precision) if isinstance(precision, str) else precision
    if p.linear_only:
        return count.linear * p.bits / 8 + (count.total - count.linear) * 2
    return count.total * p.bits / 8


# --------------------------------------------------------------------------------------------- KV cache
def kv_cache_bytes(shape: ModelShape, seq_len: int, batch: int = 1, bytes_per_elem: int = 2,
                   block_size: int | None = None) -> int:
    """``2 × L × n_kv × d × seq_len × batch × bytes`` (reference §3); ``block_size`` rounds tokens up per sequence
    to whole blocks, as vLLM allocates them."""
    tokens = seq_len if not block_size else math.ceil(seq_len / block_size) * block_size
    return 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * tokens * batch * bytes_per_elem


def kv_fraction_per_gpu(n_kv: int, tp: int) -> float:
    """KV share of one TP rank: ``max(1/tp, 1/n_kv)`` — vLLM replicates KV heads when n_kv < tp (reference §6)."""
    return max(1 / tp, 1 / n_kv)


def valid_tp_degrees(shape: ModelShape, max_tp: int) -> list[int]:
    """Powers of two ≤ ``max_tp`` (GPUs per node) that divide the attention heads, and that divide the KV heads or
    are a multiple of them (reference §6, vLLM ``verify_with_parallel_config`` / ``get_num_kv_heads``)."""
    out = []
    tp = 1
    while tp <= max_tp:
        if shape.num_heads % tp == 0 and (shape.num_kv_heads % tp == 0 or tp % shape.num_kv_heads == 0):
            out.append(tp)
        tp *= 2
    return out


# --------------------------------------------------------------------------------------------- activations
def inference_activation_bytes(shape: ModelShape, tokens: int, batch: int, tp: int = 1, act_bytes: int = 2) -> float:
    """Peak activation workspace of one forward pass over ``tokens`` tokens: residual stream, norm output, QKV and
    attention output (≈ 4·h per token) plus the MLP intermediates (gate, up, product: 3·I, split over TP), and fp32
    logits for the last token of each sequence (b·V·4, vocab-parallel). An estimate of what vLLM's profile run
    measures (reference §3: ~1–2 GiB for 7–70B at default batch tokens); override it when you have a measurement."""
    width = shape.intermediate_size
    if shape.num_experts:
        width = shape.experts_per_token * shape.expert_intermediate_size + shape.shared_expert_intermediate_size
    per_token = (4 * shape.hidden_size + 3 * width / tp) * act_bytes
    return tokens * per_token + batch * shape.vocab_size * 4 / tp


def training_activation_bytes_per_layer(seq: int, micro_batch: int, hidden: int, heads: int, tp: int = 1,
                                        checkpointing: bool = False, flash_attention: bool = True) -> float:
    """Korthikanti et al. 2022 (arXiv:2205.05198) §4, 16-bit: ``sbh(10 + 24/t + 5as/(ht))``; t=1 gives
    ``sbh(34 + 5as/h)``. FlashAttention drops the ``5as/h`` score term; full recompute keeps only ``2sbh``."""
    sbh = seq * micro_batch * hidden
    if checkpointing:
        return 2 * sbh
    per = sbh * (10 + 24 / tp)
    if not flash_attention:
        per += 5 * heads * seq * seq * micro_batch / tp
    return per


def logits_bytes(seq: int, micro_batch: int, vocab: int, tp: int = 1) -> float:
    """fp32 logits ``b·s·V·4`` (reference §8 E7), vocab-parallel over TP."""
    return micro_batch * seq * vocab * 4 / tp


# --------------------------------------------------------------------------------------------- training states
OPTIMIZERS = ("adamw", "adamw8bit", "sgd")


def model_state_bytes_per_param(optimizer: str, precision: str) -> dict[str, float]:
    """Bytes per trainable parameter. Mixed precision (bf16/fp16): weights 2 + grads 2 + optimizer K, with AdamW
    K = 12 (fp32 master, m, v: ZeRO paper §3.1, 16 B total), 8-bit AdamW K = 4 + 1 + 1 (fp32 master, 8-bit m, v),
    SGD without momentum K = 4 (fp32 master). fp32 training: weights 4 + grads 4 + optimizer (AdamW 8, 8-bit 2,
    SGD 0)."""
    if optimizer not in OPTIMIZERS:
        raise UserError(f"--optimizer: unknown optimizer {optimizer!r} (known: {', '.join(OPTIMIZERS)})")
    if precision == "fp32":
        return {"weights": 4, "gradients": 4, "optimizer": {"adamw": 8, "adamw8bit": 2, "sgd": 0}[optimizer]}
    if precision in ("bf16", "fp16"):
        return {"weights": 2, "gradients": 2, "optimizer": {"adamw": 12, "adamw8bit": 6, "sgd": 4}[optimizer]}
    raise UserError(f"--precision: full training/fine-tuning needs bf16, fp16 or fp32 weights, got {precision!r} "
                    "(use --finetune lora for a quantized base)")


def zero_shard(states: dict[str, float], stage: int, dp: int) -> dict[str, float]:
    """ZeRO (Rajbhandari et al. 2020, §5): stage 1 shards optimizer states, 2 also gradients, 3 also weights."""
    if stage not in (0, 1, 2, 3):
        raise UserError(f"--zero: stage must be 0, 1, 2 or 3, got {stage}")
    out = dict(states)
    for key, from_stage in (("optimizer", 1), ("gradients", 2), ("weights", 3)):
        if stage >= from_stage:
            out[key] = states[key] / dp
    return out


def deepspeed_zero2_cold(total_params: int, gpus_per_node: int, num_nodes: int = 1,
                         cpu_offload: bool = False) -> tuple[float, float]:
    """DeepSpeed ``estimate_zero2_model_states_mem_needs`` (reference §4): (GPU bytes per GPU, CPU bytes per node)."""
    total_gpus = gpus_per_node * num_nodes
    if cpu_offload:
        return 2 * total_params, total_params * max(4 * total_gpus, 16) * 1.5
    return 4 * total_params + 16 * total_params / total_gpus, 4 * total_params * gpus_per_node * 1.5


def lora_params(shape: ModelShape, rank: int) -> int:
    """LoRA on every decoder Linear (q, k, v, o, gate, up, down; each expert's MLP): ``r·(in + out)`` each."""
    h, d = shape.hidden_size, shape.head_dim
    attn = rank * ((h + shape.num_heads * d) * 2 + (h + shape.num_kv_heads * d) * 2)
    dense_mlp = 3 * rank * (h + shape.intermediate_size)
    n_moe = shape.moe_layers if shape.num_experts else 0
    moe_mlp = 0
    if n_moe:
        moe_mlp = 3 * rank * (h + shape.expert_intermediate_size) * shape.num_experts
        if shape.shared_expert_intermediate_size:
            moe_mlp += 3 * rank * (h + shape.shared_expert_intermediate_size)
    return shape.num_layers * attn + (shape.num_layers - n_moe) * dense_mlp + n_moe * moe_mlp


# --------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class InferenceInput:
    batch: int = 1
    context: int = 4096
    kv_precision: str = "bf16"
    block_size: int = 16  # vLLM default on CUDA
    batch_tokens: int = 8192  # tokens in one forward pass (prefill chunk) for the activation estimate
    activation_gib: float | None = None  # override the activation estimate


@dataclass(frozen=True)
class TrainingInput:
    finetune: Literal["full", "lora"] = "full"
    optimizer: str = "adamw"
    micro_batch: int = 1
    seq_len: int = 4096
    activation_checkpointing: bool = False
    flash_attention: bool = True
    zero_stage: int = 3
    lora_rank: int = 16


@dataclass(frozen=True)
class PlanInput:
    shape: ModelShape
    count: ParamCount
    precision: str = "bf16"
    workload: Workload = "inference"
    inference: InferenceInput = field(default_factory=InferenceInput)
    training: TrainingInput = field(default_factory=TrainingInput)
    overhead_gib: float = 1.0  # CUDA context + NCCL per GPU (reference §3, §8)
    memory_fraction: float | None = None  # None: 0.9 (vLLM default / training headroom), 1.0 for GGUF
    max_nodes: int = 64


@dataclass(frozen=True)
class Breakdown:
    """Bytes on one GPU."""

    weights: float = 0
    kv_cache: float = 0
    activations: float = 0
    gradients: float = 0
    optimizer: float = 0
    overhead: float = 0

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.gradients + self.optimizer + self.overhead

    def gib(self) -> dict[str, float]:
        out = {k: round(v / GIB, 3) for k, v in asdict(self).items()}
        out["total"] = round(self.total / GIB, 3)
        return out


@dataclass(frozen=True)
class Layout:
    gpu: str
    fits: bool
    budget_gib: float
    gpus: int = 0  # per replica
    tp: int = 0
    pp: int = 1
    dp: int = 1  # ZeRO data-parallel ranks (training)
    nodes: int = 0
    per_gpu: Breakdown | None = None
    kv_tokens: int | None = None  # inference: KV tokens the leftover budget holds (whole replica)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["per_gpu_gib"] = self.per_gpu.gib() if self.per_gpu else None
        del d["per_gpu"]
        d["notes"] = list(self.notes)
        return d


def memory_fraction(inp: PlanInput) -> float:
    if inp.memory_fraction is not None:
        return inp.memory_fraction
    if inp.workload == "inference" and get_precision(inp.precision).engine == "llama.cpp":
        return 1.0
    return 0.9


def _act_bytes(precision: str) -> int:
    return 4 if precision == "fp32" else 2


def per_gpu_breakdown(inp: PlanInput, tp: int = 1, pp: int = 1, dp: int = 1) -> Breakdown:
    """Memory on one GPU of a layout: TP ranks × PP stages (inference) or TP × ZeRO-DP ranks (training)."""
    s, prec = inp.shape, get_precision(inp.precision)
    overhead = inp.overhead_gib * GIB
    if inp.workload == "inference":
        i = inp.inference
        weights = model_weight_bytes(inp.count, prec) / (tp * pp)
        kv = kv_cache_bytes(s, i.context, i.batch, kv_bytes_per_elem(i.kv_precision), i.block_size)
        kv = kv * kv_fraction_per_gpu(s.num_kv_heads, tp) / pp
        if i.activation_gib is not None:
            act = i.activation_gib * GIB
        else:
            act = inference_activation_bytes(s, min(i.batch_tokens, i.batch * i.context), i.batch, tp,
                                              _act_bytes(prec.name))
        return Breakdown(weights=weights, kv_cache=kv, activations=act, overhead=overhead)
    t = inp.training
    act = s.num_layers * training_activation_bytes_per_layer(
        t.seq_len, t.micro_batch, s.hidden_size, s.num_heads, tp, t.activation_checkpointing, t.flash_attention)
    act += logits_bytes(t.seq_len, t.micro_batch, s.vocab_size, tp)
    if t.finetune == "full":
        per_param = model_state_bytes_per_param(t.optimizer, prec.name)
        states = zero_shard({k: v * inp.count.total / tp for k, v in per_param.items()}, t.zero_stage, dp)
        return Breakdown(activations=act, overhead=overhead, **states)
    # LoRA / QLoRA: frozen base at --precision; adapters trained in mixed precision (16 B/param with AdamW)
    adapters = lora_params(s, t.lora_rank)
    base = model_weight_bytes(inp.count, prec) / tp
    if t.zero_stage >= 3:
        base /= dp
    per_param = model_state_bytes_per_param(t.optimizer, "bf16")
    states = zero_shard({k: v * adapters / tp for k, v in per_param.items()}, t.zero_stage, dp)
    return Breakdown(weights=base + states["weights"], gradients=states["gradients"],
                     optimizer=states["optimizer"], activations=act, overhead=overhead)


def kv_token_capacity(inp: PlanInput, bd: Breakdown, budget: float, tp: int, pp: int) -> int:
    """KV tokens that fit in what the budget leaves after weights, activations and overhead, in whole blocks."""
    s, i = inp.shape, inp.inference
    layers = math.ceil(s.num_layers / pp)
    per_token = 2 * layers * s.num_kv_heads * s.head_dim * kv_bytes_per_elem(i.kv_precision)
    per_token *= kv_fraction_per_gpu(s.num_kv_heads, tp)
    free = budget - (bd.weights + bd.activations + bd.overhead)
    if free <= 0:
        return 0
    return int(free // (per_token * i.block_size)) * i.block_size


def _candidates(inp: PlanInput, tps: list[int], max_gpus: int) -> list[tuple[int, int]]:
    """(TP, PP) for inference or (TP, DP) for training, fewest GPUs first.

    Inference: tensor parallel within a node first; pipeline stages only once TP is at its largest valid degree,
    one stage per TP group, across nodes (reference §6: "tensor parallel size is the number of GPUs in each node,
    and the pipeline parallel size is the number of nodes"). Training: TP × ZeRO data-parallel ranks, the smaller
    TP first at equal GPU count (ZeRO sharding communicates less than TP); without ZeRO (stage 0) extra
    data-parallel ranks do not shrink per-GPU memory, so only TP is tried."""
    out: list[tuple[int, int]] = []
    if inp.workload == "inference":
        out += [(tp, 1) for tp in tps]
        top = tps[-1]
        out += [(top, pp) for pp in range(2, min(inp.shape.num_layers, max_gpus // top) + 1)]
        return sorted(out, key=lambda c: (c[0] * c[1], c[1]))
    for tp in tps:
        dps = range(1, max_gpus // tp + 1) if inp.training.zero_stage else (1,)
        out += [(tp, dp) for dp in dps]
    return sorted(out, key=lambda c: (c[0] * c[1], c[0]))


def plan_gpu(inp: PlanInput, gpu: Gpu, gpus_per_node: int | None = None) -> Layout:
    """The smallest layout (fewest GPUs) that fits on ``gpu``, or ``fits=False`` (see ``_candidates``)."""
    per_node = gpus_per_node or gpu.gpus_per_node
    fraction = memory_fraction(inp)
    budget = fraction * gpu.usable_gib * GIB
    tps = valid_tp_degrees(inp.shape, per_node)
    notes: list[str] = []
    if not tps:
        return Layout(gpu=gpu.id, fits=False, budget_gib=round(budget / GIB, 2),
                      notes=(f"no tensor-parallel degree ≤ {per_node} divides the heads",))
    max_gpus = inp.max_nodes * per_node
    for tp, other in _candidates(inp, tps, max_gpus):
        tp_pp_dp = (tp, other, 1) if inp.workload == "inference" else (tp, 1, other)
        bd = per_gpu_breakdown(inp, *tp_pp_dp)
        if bd.total > budget:
            continue
        if tp > 1 and gpu.pcie_only:
            notes.append(f"{gpu.name} is PCIe-only: TP={tp} runs its all-reduces over PCIe; "
                         "pipeline or data parallelism may serve better (reference §6)")
        if tp_pp_dp[1] > 1:
            notes.append("pipeline stages run on separate nodes: they need a fast fabric between them")
        kv_tokens = kv_token_capacity(inp, bd, budget, tp, tp_pp_dp[1]) if inp.workload == "inference" else None
        total = tp * other
        return Layout(gpu=gpu.id, fits=True, budget_gib=round(budget / GIB, 2), gpus=total, tp=tp,
                      pp=tp_pp_dp[1], dp=tp_pp_dp[2], nodes=math.ceil(total / per_node), per_gpu=bd,
                      kv_tokens=kv_tokens, notes=tuple(notes))
    return Layout(gpu=gpu.id, fits=False, budget_gib=round(budget / GIB, 2),
                  notes=(f"does not fit in {inp.max_nodes} nodes × {per_node} GPUs",))


def validate(inp: PlanInput) -> None:
    """Reject sizes that make no sense, with the option's name."""
    get_precision(inp.precision)
    checks: list[tuple[str, float]] = [("--overhead-gib", inp.overhead_gib + 1e-12)]
    if inp.workload == "inference":
        i = inp.inference
        kv_bytes_per_elem(i.kv_precision)
        checks += [("--batch", i.batch), ("--context", i.context), ("--block-size", i.block_size),
                   ("--batch-tokens", i.batch_tokens)]
        if i.activation_gib is not None:
            checks.append(("--activation-gib", i.activation_gib + 1e-12))
    else:
        t = inp.training
        checks += [("--micro-batch", t.micro_batch), ("--seq-len", t.seq_len), ("--lora-rank", t.lora_rank)]
        if t.finetune not in ("full", "lora"):
            raise UserError(f"--finetune: must be full or lora, got {t.finetune!r}")
        if t.finetune == "full":
            model_state_bytes_per_param(t.optimizer, get_precision(inp.precision).name)
        elif t.optimizer not in OPTIMIZERS:
            raise UserError(f"--optimizer: unknown optimizer {t.optimizer!r} (known: {', '.join(OPTIMIZERS)})")
        zero_shard({"weights": 0, "gradients": 0, "optimizer": 0}, t.zero_stage, 1)
    checks.append(("--max-nodes", inp.max_nodes))
    for name, value in checks:
        if not value > 0:
            raise UserError(f"{name}: must be greater than zero, got {value:g}")
    if inp.memory_fraction is not None and not 0 < inp.memory_fraction <= 1:
        raise UserError(f"--memory-fraction: must be in (0, 1], got {inp.memory_fraction}")


def plan(inp: PlanInput, gpus: list[Gpu], gpus_per_node: int | None = None) -> list[Layout]:
    """One layout per GPU model (in the order given)."""
    validate(inp)
    return [plan_gpu(inp, g, gpus_per_node) for g in gpus]


def choose(layouts: list[Layout], gpus: list[Gpu]) -> Layout | None:
    """The fewest GPUs, then the fewest nodes, then the smallest card that does it; None when nothing fits."""
    usable = {g.id: g.usable_gib for g in gpus}
    fitting = [lay for lay in layouts if lay.fits]
    if not fitting:
        return None
    return min(fitting, key=lambda lay: (lay.gpus, lay.nodes, usable[lay.gpu]))
