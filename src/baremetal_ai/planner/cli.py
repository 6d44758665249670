"""Argument parsers and runners for `baremetal plan` and `baremetal tco` (wired into baremetal_ai.cli)."""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Any

import yaml

from baremetal_ai.declare import config as declare_config
from baremetal_ai.errors import UserError
from baremetal_ai.planner import cost, gpus, memory, params

PLAN_EPILOG = """\
examples:
  baremetal plan --model llama-3-70b                      # inference, bf16, batch 1 × 4096 tokens
  baremetal plan --config config.json --batch 32 --context 8192 --kv-precision fp8
  baremetal plan --params 70B --precision gguf-q4_k_m --gpu l40s --gpu a100-80gb
  baremetal plan --model llama-3-8b --workload finetune --finetune full --activation-checkpointing
  baremetal plan --model llama-2-70b --workload finetune --finetune lora --precision nf4-dq --gpu l40s
  baremetal plan --model mixtral-8x7b --gpu h100 --pulumi-config > Pulumi.dev.yaml

Memory per GPU = weights/TP + KV cache·max(1/TP, 1/n_kv) + activations + overhead (1 GiB CUDA context + NCCL),
against a budget of 0.9 × usable memory (vLLM's gpu_memory_utilization; 1.0 for GGUF/llama.cpp). Training adds
gradients and optimizer states (16 B/param with AdamW, sharded by ZeRO) and Korthikanti et al. activations.
Formulas, sources and accuracy limits: docs/planner.md. Exit status: 0 a layout fits, 1 none fits, 2 bad input.
"""

TCO_EPILOG = """\
examples:
  baremetal tco --prices examples/prices-example.yml
  baremetal tco --prices my-quotes.yml --months 36 --utilization 0.6 --plot tco.png
  baremetal tco --prices my-quotes.yml --json

Cloud cost scales with utilization (instances run only while busy); a bare-metal lease or purchase costs the same
busy or idle (power aside). Break-even utilization: where both cost the same over the horizon. The price file's
format is documented in examples/prices-example.yml; the example prices are illustrative, not quotes.
"""


# --------------------------------------------------------------------------------------------- plan
def add_plan_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "plan", help="how many GPUs of which kind a model needs (memory, tensor parallel, nodes)",
        description="Estimate GPU memory for inference, training or fine-tuning of a decoder-only transformer "
                    "and find, per GPU model, the smallest layout (GPUs, tensor-parallel degree, nodes) that fits.",
        epilog=PLAN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--params", metavar="SIZE", help="parameter count, e.g. 70B, 7.5B, 350M (shape for KV cache "
                                                      "and activations: the nearest built-in model, stated)")
    src.add_argument("--config", metavar="FILE", help="a Hugging Face config.json (Llama, Mistral, Mixtral, Qwen2)")
    src.add_argument("--model", metavar="NAME", help=f"a built-in model: {', '.join(gpus.builtin_models())}")
    p.add_argument("--precision", default="bf16",
                   help="weights: fp32, bf16, fp16, fp8, int8, fp4, int4, gptq, awq, nf4, nf4-dq, gguf-q4_k_m "
                        "(and other GGUF types), exl2-<bpw> (default bf16)")
    p.add_argument("--workload", choices=("inference", "training", "finetune"), default="inference",
                   help="default inference; training = full training (as --finetune full)")
    g = p.add_argument_group("inference")
    g.add_argument("--batch", type=int, default=1, help="concurrent sequences (default 1)")
    g.add_argument("--context", type=int, default=4096, help="tokens per sequence, prompt + output (default 4096)")
    g.add_argument("--kv-precision", default="bf16", help="KV cache: bf16, fp16, fp8, fp32 (default bf16)")
    g.add_argument("--block-size", type=int, default=16, help="KV block size in tokens (vLLM default 16)")
    g.add_argument("--batch-tokens", type=int, default=8192,
                   help="tokens in one forward pass, for the activation estimate (default 8192)")
    g.add_argument("--activation-gib", type=float, help="activation workspace per GPU in GiB, e.g. measured "
                                                        "(default: estimated)")
    g = p.add_argument_group("training and fine-tuning")
    g.add_argument("--finetune", choices=("full", "lora"), default="full", help="default full")
    g.add_argument("--optimizer", choices=memory.OPTIMIZERS, default="adamw",
                   help="adamw (16 B/param mixed precision), adamw8bit, sgd (default adamw)")
    g.add_argument("--micro-batch", type=int, default=1, help="sequences per GPU per step (default 1)")
    g.add_argument("--seq-len", type=int, default=4096, help="training sequence length (default 4096)")
    g.add_argument("--activation-checkpointing", action="store_true", help="full recompute: keep only layer inputs")
    g.add_argument("--no-flash-attention", dest="flash_attention", action="store_false",
                   help="store attention scores (eager attention): adds 5·a·s²·b per layer")
    g.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=3,
                   help="ZeRO stage that shards states over data-parallel GPUs (default 3, like FSDP full shard)")
    g.add_argument("--lora-rank", type=int, default=16, help="LoRA rank on every linear layer (default 16)")
    g = p.add_argument_group("hardware")
    g.add_argument("--gpu", action="append", metavar="MODEL",
                   help=f"only these GPU models (repeatable): {', '.join(x.id for x in gpus.catalog())}")
    g.add_argument("--gpus-per-node", type=int, help="GPUs per server (default: from the catalog)")
    g.add_argument("--max-nodes", type=int, default=64, help="largest layout to consider (default 64 nodes)")
    g.add_argument("--overhead-gib", type=float, default=1.0,
                   help="per-GPU runtime overhead: CUDA context, NCCL (default 1)")
    g.add_argument("--memory-fraction", type=float,
                   help="share of GPU memory to plan with (default 0.9; 1.0 for GGUF inference)")
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print JSON")
    g.add_argument("--pulumi-config", action="store_true",
                   help="print the cluster keys (baremetal:nodeCount, gpuModel, gpusPerNode, ...) for "
                        "Pulumi.<stack>.yaml for the chosen layout")
    g.add_argument("--cluster-name", default="gpu-cluster", help="cluster name in --pulumi-config")
    g.add_argument("--backend", choices=("redfish", "oci"), default="redfish",
                   help="declare-stage backend in --pulumi-config (default redfish)")
    g.add_argument("--fabric", choices=("roce", "infiniband"), default="roce",
                   help="fabric in --pulumi-config (default roce)")
    g.add_argument("--mtu", type=int, default=9000, help="fabric MTU in --pulumi-config (default 9000)")
    return p


def _nearest_shape(n_params: int) -> tuple[str, params.ModelShape]:
    best: tuple[float, str, params.ModelShape] | None = None
    for name, entry in gpus.builtin_models().items():
        shape, _ = params.shape_from_config(entry["config"], source=f"models.yml:{name}")
        if shape.num_experts:
            continue
        dist = abs(math.log(params.count_params(shape).total / n_params))
        if best is None or dist < best[0]:
            best = (dist, name, shape)
    assert best is not None
    return best[1], best[2]


def resolve_model(args: argparse.Namespace) -> tuple[str, params.ModelShape, params.ParamCount, list[str]]:
    given = [k for k in ("params", "config", "model") if getattr(args, k, None)]
    if len(given) != 1:
        raise UserError("give exactly one of --params, --config, --model")
    notes: list[str] = []
    if args.config:
        shape, n = params.load_config(args.config)
        notes += n
        return shape.name or args.config, shape, params.count_params(shape), notes
    if args.model:
        key, entry = gpus.find_model(args.model)
        shape, _ = params.shape_from_config(entry["config"], source=f"models.yml:{key}")
        return key, shape, params.count_params(shape), notes
    total = params.parse_size(args.params)
    name, shape = _nearest_shape(total)
    ref = params.count_params(shape)
    notes.append(f"--params gives no shape: KV cache, activations and TP rules use {name}'s "
                 f"({params.format_count(ref.total)}); pass --config for the model's own")
    count = params.ParamCount(total=total, active=total, embedding=0, linear=total, per_layer=ref.per_layer,
                              attention_per_layer=ref.attention_per_layer, mlp_per_layer=ref.mlp_per_layer)
    return f"{args.params} (shape of {name})", shape, count, notes


def build_input(args: argparse.Namespace, shape: params.ModelShape, count: params.ParamCount) -> memory.PlanInput:
    workload = args.workload
    return memory.PlanInput(
        shape=shape, count=count, precision=memory.get_precision(args.precision).name, workload=workload,
        inference=memory.InferenceInput(batch=args.batch, context=args.context, kv_precision=args.kv_precision,
                                        block_size=args.block_size, batch_tokens=args.batch_tokens,
                                        activation_gib=args.activation_gib),
        training=memory.TrainingInput(finetune="full" if workload == "training" else args.finetune,
                                      optimizer=args.optimizer, micro_batch=args.micro_batch, seq_len=args.seq_len,
                                      activation_checkpointing=args.activation_checkpointing,
                                      flash_attention=args.flash_attention, zero_stage=args.zero,
                                      lora_rank=args.lora_rank),
        overhead_gib=args.overhead_gib, memory_fraction=args.memory_fraction, max_nodes=args.max_nodes)


_CLUSTER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")  # declare stage's clusterName rule


def pulumi_config(layout: memory.Layout, gpu: gpus.Gpu, args: argparse.Namespace,
                  gpus_per_node: int | None) -> dict[str, Any]:
    """The cluster keys of the declare stage (``baremetal:*`` in Pulumi.<stack>.yaml, see
    baremetal_ai.declare.config) for this layout. Network ranges, nodes/BMCs or the OCI object are the user's."""
    per_node = gpus_per_node or gpu.gpus_per_node
    if not _CLUSTER_NAME.match(args.cluster_name):
        raise UserError(f"--cluster-name: {args.cluster_name!r} is not a valid cluster name "
                        "(lower-case letters, digits and '-', starting with a letter, at most 32)")
    if not declare_config.MTU_MIN <= args.mtu <= declare_config.MTU_MAX:
        raise UserError(f"--mtu: {args.mtu} is outside {declare_config.MTU_MIN}-{declare_config.MTU_MAX}")
    cfg: dict[str, Any] = {
        "baremetal:clusterName": args.cluster_name, "backend": args.backend, "nodeCount": layout.nodes,
        "gpuModel": gpu.declare_model, "gpusPerNode": per_node, "fabric": args.fabric, "mtu": args.mtu}
    cfg = {(k if k.startswith("baremetal:") else f"baremetal:{k}"): v for k, v in cfg.items()}
    return {"config": cfg}


def oci_shape(gpu: gpus.Gpu, gpus_per_node: int) -> str:
    """The OCI bare-metal shape that carries ``gpus_per_node`` of ``gpu`` (--backend oci needs one)."""
    for shape, spec in declare_config.GPU_SHAPES.items():
        if spec.gpu_model == gpu.declare_model and spec.gpu_count == gpus_per_node:
            return shape
    raise UserError(f"--backend: no OCI bare-metal shape carries {gpus_per_node} × {gpu.declare_model}; "
                    "use --backend redfish or another --gpu")


def plan_report(args: argparse.Namespace) -> dict[str, Any]:
    """Everything `baremetal plan` prints, as data."""
    name, shape, count, notes = resolve_model(args)
    if args.gpus_per_node is not None and args.gpus_per_node < 1:
        raise UserError(f"--gpus-per-node: must be greater than zero, got {args.gpus_per_node}")
    inp = build_input(args, shape, count)
    selected = [gpus.find_gpu(g) for g in args.gpu] if args.gpu else list(gpus.catalog())
    layouts = memory.plan(inp, selected, args.gpus_per_node)
    chosen = memory.choose(layouts, selected)
    prec = memory.get_precision(inp.precision)
    if args.workload != "inference" and inp.training.finetune == "lora" and inp.training.zero_stage:
        notes.append("LoRA: frozen base weights are sharded only with --zero 3")
    report: dict[str, Any] = {
        "schema_version": 1,
        "model": {"name": name, "model_type": shape.model_type, "hidden_size": shape.hidden_size,
                  "num_layers": shape.num_layers, "num_heads": shape.num_heads, "num_kv_heads": shape.num_kv_heads,
                  "head_dim": shape.head_dim, "num_experts": shape.num_experts},
        "params": {"total": count.total, "active": count.active, "embedding": count.embedding},
        "workload": args.workload,
        "precision": {"name": prec.name, "bits_per_weight": round(prec.bits, 4), "source": prec.source},
        "inputs": ({"batch": args.batch, "context": args.context, "kv_precision": args.kv_precision}
                   if args.workload == "inference" else
                   {"finetune": inp.training.finetune, "optimizer": args.optimizer, "micro_batch": args.micro_batch,
                    "seq_len": args.seq_len, "activation_checkpointing": args.activation_checkpointing,
                    "zero_stage": args.zero, "lora_rank": args.lora_rank if inp.training.finetune == "lora" else None}),
        "memory_fraction": memory.memory_fraction(inp),
        "breakdown_gib": memory.per_gpu_breakdown(inp).gib(),
        "layouts": [lay.to_dict() for lay in layouts],
        "chosen": chosen.to_dict() if chosen else None,
        "notes": notes,
    }
    if inp.training.finetune == "lora" and args.workload != "inference":
        report["params"]["lora_trainable"] = memory.lora_params(shape, args.lora_rank)
    if chosen:
        gpu = next(g for g in selected if g.id == chosen.gpu)
        report["pulumi_config"] = pulumi_config(chosen, gpu, args, args.gpus_per_node)
        if args.backend == "oci":
            report["oci_shape"] = oci_shape(gpu, args.gpus_per_node or gpu.gpus_per_node)
    return report


def _print_plan(r: dict[str, Any]) -> None:
    names = {g.id: g.name for g in gpus.catalog()}
    p = r["params"]
    active = f", {params.format_count(p['active'])} active" if p["active"] != p["total"] else ""
    print(f"model      {r['model']['name']}: {params.format_count(p['total'])} parameters{active}")
    inputs = ", ".join(f"{k} {v}" for k, v in r["inputs"].items() if v is not None)
    print(f"workload   {r['workload']}, weights {r['precision']['name']} ({r['precision']['bits_per_weight']:g} bpw), "
          f"{inputs}")
    print("\nmemory of one replica on one GPU (GiB)")
    for k, v in r["breakdown_gib"].items():
        if v or k == "total":
            print(f"  {k:12s} {v:10,.2f}")
    print(f"\nper GPU model (budget = {r['memory_fraction']:g} × usable memory)")
    print(f"  {'GPU':26s} {'budget':>7s} {'fits':>4s} {'GPUs':>5s} {'TP':>3s} {'PP':>3s} {'DP':>3s} {'nodes':>5s} "
          f"{'GiB/GPU':>8s} {'KV tokens':>10s}")
    for lay in r["layouts"]:
        name = names.get(lay["gpu"], lay["gpu"])
        if not lay["fits"]:
            print(f"  {name:26s} {lay['budget_gib']:7.2f} {'no':>4s}   {'; '.join(lay['notes'])}")
            continue
        kv = f"{lay['kv_tokens']:,}" if lay["kv_tokens"] is not None else "-"
        print(f"  {name:26s} {lay['budget_gib']:7.2f} {'yes':>4s} {lay['gpus']:5d} {lay['tp']:3d} {lay['pp']:3d} "
              f"{lay['dp']:3d} {lay['nodes']:5d} {lay['per_gpu_gib']['total']:8.2f} {kv:>10s}")
    c = r["chosen"]
    if c:
        print(f"\nsmallest: {c['gpus']} × {names.get(c['gpu'], c['gpu'])} (TP={c['tp']}, PP={c['pp']}, DP={c['dp']}, "
              f"{c['nodes']} node(s)); per GPU: "
              + ", ".join(f"{k} {v:.2f}" for k, v in c["per_gpu_gib"].items() if v) + " GiB")
    else:
        print("\nno layout fits on the GPUs considered")
    notes = list(r["notes"]) + sorted({n for lay in r["layouts"] if lay["fits"] for n in lay["notes"]})
    for n in notes:
        print(f"note: {n}")


def run_plan(args: argparse.Namespace) -> int:
    report = plan_report(args)
    if args.pulumi_config and not args.json:
        if not report["chosen"]:
            raise UserError("--pulumi-config: no layout fits on the GPUs considered", exit_code=1)
        c = report["chosen"]
        print(f"# Pulumi.<stack>.yaml — from `baremetal plan`: {report['model']['name']}, {report['workload']} "
              f"{report['precision']['name']}: {c['gpus']} × {c['gpu']} (TP={c['tp']}, PP={c['pp']}, DP={c['dp']})")
        print("# add mgmtCidr, fabricCidr and the backend's keys (redfish: nodes + BMC; oci: the oci object)")
        if report.get("oci_shape"):
            print(f"# baremetal:oci shape: {report['oci_shape']}")
        print(yaml.safe_dump(report["pulumi_config"], sort_keys=False), end="")
        return 0
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_plan(report)
    return 0 if report["chosen"] else 1


# --------------------------------------------------------------------------------------------- tco
def add_tco_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "tco", help="cloud by the hour vs bare metal by the month: totals, break-even, plot",
        description="Compare the total cost of cloud GPU instances with bare-metal servers (monthly lease, "
                    "purchase amortized plus colocation and power, or hourly bare-metal cloud) over a horizon, "
                    "from prices you supply in a YAML file.",
        epilog=TCO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prices", required=True, metavar="FILE", help="price file (see examples/prices-example.yml)")
    p.add_argument("--months", type=int, default=36, help="horizon in months (default 36)")
    p.add_argument("--utilization", type=float, default=1.0,
                   help="fraction of hours the GPUs are busy, 0–1 (default 1.0)")
    p.add_argument("--servers", type=int, help="number of servers / instances (default: the price file's, or 1)")
    p.add_argument("--plot", metavar="OUT.png", help="write a PNG: cumulative cost by month, total vs utilization")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def _money(x: float, cur: str) -> str:
    return f"{x:,.0f} {cur}"


def run_tco(args: argparse.Namespace) -> int:
    prices = cost.load_prices(args.prices)
    if args.servers is not None:
        if args.servers < 1:
            raise UserError(f"--servers: must be a whole number ≥ 1, got {args.servers}")
        prices = cost.Prices(**{**prices.__dict__, "servers": args.servers})
    result = cost.tco(prices, args.months, args.utilization)
    if args.plot:
        cost.plot(result, prices, args.plot)
    if args.json:
        d = result.to_dict()
        d["prices_file"] = str(args.prices)
        d["plot"] = args.plot
        print(json.dumps(d, indent=2))
        return 0
    cur = result.currency
    if result.label:
        print(result.label)
    print(f"{result.servers} server(s), {result.months} months at {result.utilization:.0%} utilization")
    rows = [("cloud: " + prices.cloud.name, result.cloud_monthly, result.cloud_total),
            ("bare metal: " + prices.bare_metal.name, result.bare_metal_monthly, result.bare_metal_total)]
    width = max(len(r[0]) for r in rows)
    print(f"  {'':{width}s} {'per month':>16s} {'total':>18s}")
    for label, monthly, total in rows:
        print(f"  {label:{width}s} {_money(monthly, cur):>16s} {_money(total, cur):>18s}")
    for label, bd in (("cloud", result.cloud_breakdown), ("bare metal", result.bare_metal_breakdown)):
        print(f"  {label} total by item: " + ", ".join(f"{k} {_money(v, cur)}" for k, v in bd.items() if v))
    verdict = "bare metal" if result.savings > 0 else "cloud"
    print(f"cheaper over the horizon: {verdict} by {_money(abs(result.savings), cur)}")
    be = result.break_even_utilization
    if be is None:
        print("break-even utilization: none — bare metal costs more even at 100% utilization")
    elif be == 0:
        print("break-even utilization: 0% — bare metal costs less even when idle")
    else:
        print(f"break-even utilization: {be:.1%} (above it bare metal is cheaper over {result.months} months)")
    if result.break_even_month is not None:
        print(f"break-even month at {result.utilization:.0%}: {result.break_even_month}")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0
