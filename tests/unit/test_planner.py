"""`baremetal plan`: parameter counts, memory formulas, TP rules and layouts against the planner reference.

Reference = /work/shared/docs/planner-reference.md (summarised with sources in docs/planner.md); section numbers
(§1 counts, §2 precision, §3 KV cache, §4 training, §6 TP, §7 catalog, §8 worked examples E1–E10) are the
reference's. GiB = 2^30 B.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import replace

import pytest
import yaml

from baremetal_ai.declare import config as declare_config
from baremetal_ai.errors import UserError
from baremetal_ai.planner import cli, gpus, memory, params
from baremetal_ai.planner.memory import GIB

# ------------------------------------------------------------------------------------------------ helpers


def shape(name: str) -> params.ModelShape:
    _, entry = gpus.find_model(name)
    return params.shape_from_config(entry["config"])[0]


def plan_input(name: str, **kw) -> memory.PlanInput:
    s = shape(name)
    inference = kw.pop("inference", memory.InferenceInput())
    training = kw.pop("training", memory.TrainingInput())
    return memory.PlanInput(shape=s, count=params.count_params(s), inference=inference, training=training, **kw)


def gib(x: float) -> float:
    return x / GIB


def run(argv: list[str], capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="baremetal")
    sub = parser.add_subparsers(dest="cmd", required=True)
    cli.add_plan_parser(sub)
    rc = cli.run_plan(parser.parse_args(["plan", *argv]))
    return rc, capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ §1 counts

# (model, computed total [derived, exact], published count as the reference quotes it, tolerance for it)
REFERENCE_COUNTS = [
    ("llama-2-7b", 6_738_415_616, 6.74e9, 0.005e9),  # Hub 6.74B
    ("llama-2-13b", 13_015_864_320, 13.0e9, 0.05e9),  # Hub 13.0B
    ("llama-2-70b", 68_976_648_192, 69.0e9, 0.05e9),  # Hub 69.0B
    ("llama-3-8b", 8_030_261_248, 8.03e9, 0.005e9),  # Hub 8.03B
    ("llama-3-70b", 70_553_706_496, 70.6e9, 0.05e9),  # Hub 70.6B
    ("mistral-7b-v0.1", 7_241_732_096, 7.3e9, 0.1e9),  # "7.3B" (announcement)
    ("mixtral-8x7b", 46_702_792_704, 47e9, 0.5e9),  # "47B total"
    ("qwen2.5-7b", 7_615_616_512, 7.61e9, 0.01e9),  # model card 7.61B (truncated, not rounded)
]


@pytest.mark.parametrize(("name", "computed", "published", "tol"), REFERENCE_COUNTS)
def test_reference_param_counts_exact_and_near_published(name, computed, published, tol):
    count = params.count_params(shape(name))
    assert count.total == computed
    assert abs(count.total - published) <= tol


def test_mixtral_active_params_use_top_k():
    count = params.count_params(shape("mixtral-8x7b"))
    assert count.active == 12_879_925_248  # "13B active" (Jiang et al. 2024 §2)
    assert round(count.active / 1e9) == 13


def test_qwen25_qkv_bias_and_non_embedding_count():
    count = params.count_params(shape("qwen2.5-7b"))
    assert count.non_embedding == 6_525_621_760  # model card: non-embedding 6.53B
    no_bias = params.count_params(replace(shape("qwen2.5-7b"), qkv_bias=False))
    s = shape("qwen2.5-7b")
    assert count.total - no_bias.total == s.num_layers * (s.num_heads * s.head_dim + 2 * s.num_kv_heads * s.head_dim)


def test_per_layer_pieces():
    c7 = params.count_params(shape("llama-2-7b"))
    assert (c7.per_layer, c7.attention_per_layer, c7.mlp_per_layer) == (202_383_360, 67_108_864, 135_266_304)
    c8 = params.count_params(shape("llama-3-8b"))
    assert (c8.per_layer, c8.attention_per_layer) == (218_112_000, 41_943_040)


def test_tied_embeddings_counted_once():
    untied = params.count_params(shape("llama-3-8b"))
    tied = params.count_params(replace(shape("llama-3-8b"), tie_word_embeddings=True))
    assert untied.total - tied.total == 128256 * 4096


def test_explicit_head_dim_differs_from_hidden_over_heads():
    cfg = {"model_type": "mistral", "hidden_size": 5120, "num_hidden_layers": 2, "num_attention_heads": 32,
           "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 1000, "vocab_size": 10}
    s, _ = params.shape_from_config(cfg)
    assert s.head_dim == 128  # not 5120/32 = 160
    attn = 5120 * 32 * 128 + 2 * 5120 * 8 * 128 + 32 * 128 * 5120
    assert params.count_params(s).attention_per_layer == attn


def test_config_file_roundtrip(tmp_path):
    _, entry = gpus.find_model("qwen2.5-7b")
    f = tmp_path / "config.json"
    f.write_text(json.dumps(entry["config"]))
    s, notes = params.load_config(f)
    assert params.count_params(s).total == 7_615_616_512
    assert notes == ()


def test_num_kv_heads_absent_means_mha():
    cfg = dict(gpus.find_model("llama-2-7b")[1]["config"])
    del cfg["num_key_value_heads"]
    assert params.shape_from_config(cfg)[0].num_kv_heads == 32


@pytest.mark.parametrize("field", ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                   "vocab_size"])
def test_missing_config_field_is_one_clear_error(tmp_path, field):
    cfg = dict(gpus.find_model("llama-3-8b")[1]["config"])
    del cfg[field]
    f = tmp_path / "config.json"
    f.write_text(json.dumps(cfg))
    with pytest.raises(UserError) as exc:
        params.load_config(f)
    assert f'config.json is missing "{field}"' in str(exc.value)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("value", [0, -4, "32", 1.5])
def test_bad_config_value_names_field(value):
    cfg = dict(gpus.find_model("llama-3-8b")[1]["config"], num_hidden_layers=value)
    with pytest.raises(UserError, match='"num_hidden_layers" must be a positive integer'):
        params.shape_from_config(cfg)


def test_config_errors_for_files_and_unsupported_families(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        params.load_config(tmp_path / "nope.json")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        params.load_config(bad)
    with pytest.raises(UserError, match="multi-head latent attention"):
        params.shape_from_config({"model_type": "deepseek_v3"})
    _, notes = params.shape_from_config(dict(gpus.find_model("llama-2-7b")[1]["config"], model_type="gemma"))
    assert "not a verified family" in notes[0]


@pytest.mark.parametrize(("text", "n"), [("70B", 70_000_000_000), ("7.5b", 7_500_000_000), ("350M", 350_000_000),
                                         ("1.5T", 1_500_000_000_000), ("1.2e9", 1_200_000_000), (8e9, 8_000_000_000)])
def test_parse_size(text, n):
    assert params.parse_size(text) == n


@pytest.mark.parametrize("text", ["0", "-3B", "abc", "0B", "B"])
def test_parse_size_rejects(text):
    with pytest.raises(UserError, match="--params"):
        params.parse_size(text)


# ------------------------------------------------------------------------------------------------ §2 precision


@pytest.mark.parametrize(("prec", "bytes_per_param"),
                         [("fp32", 4), ("bf16", 2), ("fp16", 2), ("fp8", 1), ("int8", 1), ("fp4", 0.5), ("int4", 0.5)])
def test_precision_bytes(prec, bytes_per_param):
    assert memory.weight_bytes(1_000_000_000, prec) == 1_000_000_000 * bytes_per_param


def test_accelerate_divisions_fp32_to_fp16_int8_int4():
    n = 6_738_415_616
    fp32 = memory.weight_bytes(n, "fp32")
    assert [fp32 / memory.weight_bytes(n, p) for p in ("fp16", "int8", "int4")] == [2, 4, 8]


def test_gptq_awq_w4_g128_bits_and_llama2_7b_size():
    assert memory.get_precision("gptq").bits == pytest.approx(4.156, abs=5e-4)  # 4 + (16+4)/128
    assert memory.get_precision("awq").bits == memory.get_precision("gptq-w4g128").bits
    count = params.count_params(shape("llama-2-7b"))
    assert count.linear == 6_476_005_376  # reference §2: linear params
    assert gib(memory.model_weight_bytes(count, "gptq")) == pytest.approx(3.62, abs=0.005)


def test_nf4_double_quant_qlora_numbers():
    assert memory.get_precision("nf4-dq").bits == pytest.approx(4.127, abs=5e-4)
    assert memory.get_precision("nf4").bits - memory.get_precision("nf4-dq").bits == pytest.approx(0.373, abs=5e-4)
    assert gib(memory.weight_bytes(65.2e9, "nf4-dq")) == pytest.approx(31.3, abs=0.05)  # E8 LLaMA-65B
    assert gib(memory.weight_bytes(68_976_648_192, "nf4-dq")) == pytest.approx(33.1, abs=0.05)  # E8 Llama-2-70B


def test_gguf_q4_k_m_matches_llama_cpp_readme():
    assert memory.get_precision("q4_k_m").bits == 4.8944
    w = memory.weight_bytes(70_553_706_496, "gguf-q4_k_m")
    assert w / 1e9 == pytest.approx(43.1, rel=0.005)  # README: Llama-3.1 70B Q4_K_M = 43.1 GB
    assert memory.get_precision("gguf-q4_k_m").engine == "llama.cpp"
    for name, bpw in (("q4_k_s", 4.6672), ("q5_k_m", 5.7036), ("q6_k", 6.5633), ("q8_0", 8.5008), ("f16", 16.0005),
                      ("iq4_xs", 4.4597), ("q2_k", 3.1593)):
        assert memory.get_precision(name).bits == bpw


def test_exl2_target_bpw_and_unknown_precision():
    p = memory.get_precision("exl2-4.65")
    assert (p.bits, p.linear_only) == (4.65, True)
    with pytest.raises(UserError, match="between 2 and 8"):
        memory.get_precision("exl2-9")
    with pytest.raises(UserError, match="--precision: unknown precision 'fp5'"):
        memory.get_precision("fp5")


# ------------------------------------------------------------------------------------------------ §3 KV cache


@pytest.mark.parametrize(("name", "per_token", "ctx", "expect_gib"), [
    ("llama-2-7b", 524_288, 4096, 2.0),
    ("llama-2-13b", 819_200, 4096, 3.125),
    ("llama-2-70b", 327_680, 8192, 2.5),
    ("llama-2-70b", 327_680, 4096, 1.25),
    ("llama-3-8b", 131_072, 8192, 1.0),
    ("mistral-7b-v0.1", 131_072, 8192, 1.0),
    ("mixtral-8x7b", 131_072, 32768, 4.0),
    ("qwen2.5-7b", 57_344, 32768, 1.75),
])
def test_kv_cache_reference_table(name, per_token, ctx, expect_gib):
    s = shape(name)
    assert memory.kv_cache_bytes(s, 1) == per_token
    assert gib(memory.kv_cache_bytes(s, ctx)) == expect_gib


def test_kv_cache_exact_bytes_fp8_and_blocks():
    s = shape("llama-2-13b")
    assert memory.kv_cache_bytes(s, 4096) == 3_355_443_200
    assert memory.kv_cache_bytes(s, 4096, bytes_per_elem=1) == 3_355_443_200 // 2  # FP8 KV halves it
    assert memory.kv_cache_bytes(s, 4097, block_size=16) == memory.kv_cache_bytes(s, 4112)
    assert memory.kv_cache_bytes(s, 4096, batch=3) == 3 * 3_355_443_200


def test_e10_vllm_block_page_and_capacity():
    s = shape("llama-3-8b")
    assert memory.kv_cache_bytes(s, 16) // s.num_layers == 65_536  # page per layer, block 16
    assert memory.kv_cache_bytes(s, 16) == 2 * 2**20  # 2 MiB per block across 32 layers
    inp = plan_input("llama-3-8b", inference=memory.InferenceInput(activation_gib=1))
    bd = memory.per_gpu_breakdown(inp)
    tokens = memory.kv_token_capacity(inp, bd, 72 * GIB, tp=1, pp=1)
    assert tokens // 16 == pytest.approx(28_180, abs=5)  # ~28,180 blocks ≈ 450k tokens
    assert tokens == pytest.approx(450_000, rel=0.01)


# ------------------------------------------------------------------------------------------------ §6 TP rules


def test_tp_degrees_divide_heads_and_are_powers_of_two():
    assert memory.valid_tp_degrees(shape("llama-3-8b"), 8) == [1, 2, 4, 8]
    assert memory.valid_tp_degrees(shape("llama-3-8b"), 64) == [1, 2, 4, 8, 16, 32]  # 32 heads: no 64
    assert 3 not in memory.valid_tp_degrees(shape("llama-3-8b"), 8)
    assert memory.valid_tp_degrees(shape("qwen2.5-7b"), 8) == [1, 2, 4]  # 28 heads
    assert memory.valid_tp_degrees(shape("llama-2-13b"), 4) == [1, 2, 4]  # ≤ GPUs per node


def test_kv_heads_replicated_when_fewer_than_tp():
    assert memory.kv_fraction_per_gpu(8, 16) == 1 / 8  # Llama-3-70B at TP 16: 1 head per GPU
    assert memory.kv_fraction_per_gpu(8, 16) * 16 == 2  # = 2× the unreplicated KV in total
    assert memory.kv_fraction_per_gpu(8, 2) == 1 / 2


# ------------------------------------------------------------------------------------------------ §8 E1–E6


def test_e1_llama2_7b_inference():
    inp = plan_input("llama-2-7b", inference=memory.InferenceInput(context=4096, activation_gib=1))
    bd = memory.per_gpu_breakdown(inp)
    assert gib(bd.weights) == pytest.approx(12.55, abs=0.005)
    assert gib(bd.kv_cache) == 2.0
    assert gib(bd.total) == pytest.approx(16.6, abs=0.05)
    for g in ("l40s", "a100-40gb", "h100"):
        lay = memory.plan_gpu(inp, gpus.find_gpu(g))
        assert (lay.fits, lay.gpus) == (True, 1)
    assert gib(bd.total) <= 0.9 * 24  # also fits a 24 GB card at 0.9 (21.6 GiB)


def test_e2_llama2_13b_on_a100_40gb():
    inp = plan_input("llama-2-13b", inference=memory.InferenceInput(activation_gib=1))
    bd = memory.per_gpu_breakdown(inp)
    assert gib(bd.weights) == pytest.approx(24.24, abs=0.005)
    assert bd.kv_cache == 3_355_443_200
    assert gib(bd.total) == pytest.approx(29.4, abs=0.05)
    lay = memory.plan_gpu(inp, gpus.find_gpu("a100-40gb"))
    assert lay.budget_gib == pytest.approx(35.54, abs=0.01)  # 0.9 × 39.49
    assert (lay.fits, lay.gpus) == (True, 1)
    assert lay.kv_tokens / 4096 == pytest.approx(2.97, abs=0.01)  # ≈ 2.97 concurrent 4k sequences
    assert gib(bd.total) > 0.9 * 24  # a 24 GB card: no


def test_e3_llama2_70b_on_h100_and_mi300x():
    inp = plan_input("llama-2-70b", inference=memory.InferenceInput(activation_gib=1))
    assert gib(memory.model_weight_bytes(inp.count, "bf16")) == pytest.approx(128.48, abs=0.005)
    h100 = gpus.find_gpu("h100")
    lay = memory.plan_gpu(inp, h100)
    assert (lay.gpus, lay.tp, lay.pp, lay.nodes) == (2, 2, 1, 1)  # min 2
    assert gib(lay.per_gpu.weights) == pytest.approx(64.24, abs=0.005)
    assert lay.kv_tokens == pytest.approx(37_700, rel=0.005)  # ~37.7k tokens: tight
    bd4 = memory.per_gpu_breakdown(inp, tp=4)
    assert gib(bd4.weights) == pytest.approx(32.12, abs=0.005)
    assert memory.kv_token_capacity(inp, bd4, 72 * GIB, tp=4, pp=1) == pytest.approx(496_000, rel=0.005)
    mi = memory.plan_gpu(inp, gpus.find_gpu("mi300x"))
    assert (mi.gpus, mi.budget_gib) == (1, 172.8)
    free = 172.8 * GIB - mi.per_gpu.weights - mi.per_gpu.activations - mi.per_gpu.overhead
    assert gib(free) == pytest.approx(42, abs=0.5)  # KV ≈ 42 GiB


def test_e4_llama3_8b_batch32_h100_vs_l40s():
    inp = plan_input("llama-3-8b", inference=memory.InferenceInput(batch=32, context=8192, activation_gib=2))
    bd = memory.per_gpu_breakdown(inp)
    assert gib(bd.weights) == pytest.approx(14.96, abs=0.005)
    assert gib(bd.kv_cache) == 32.0
    assert gib(bd.total) == pytest.approx(50, abs=0.1)
    assert memory.plan_gpu(inp, gpus.find_gpu("h100")).gpus == 1
    l40s = memory.plan_gpu(inp, gpus.find_gpu("l40s"))
    assert (l40s.gpus, l40s.tp) == (2, 2)
    assert gib(l40s.per_gpu.total) == pytest.approx(26.5, abs=0.05)  # 7.48 + 16 + 3
    assert any("PCIe-only" in n for n in l40s.notes)


def test_e5_gguf_q4_k_m_70b_llama_cpp():
    inp = plan_input("llama-3-70b", precision="gguf-q4_k_m",
                     inference=memory.InferenceInput(context=8192, activation_gib=0))
    assert memory.memory_fraction(inp) == 1.0  # no 0.9 rule in llama.cpp
    bd = memory.per_gpu_breakdown(inp)
    assert gib(bd.weights) == pytest.approx(40.14, rel=0.005)  # 43.1 GB
    assert gib(bd.kv_cache) == 2.5
    assert gib(bd.total) == pytest.approx(43.6, abs=0.15)
    assert memory.plan_gpu(inp, gpus.find_gpu("l40s")).gpus == 1
    assert memory.plan_gpu(inp, gpus.find_gpu("a100-80gb")).gpus == 1
    assert memory.plan_gpu(inp, gpus.find_gpu("a100-40gb")).gpus > 1


def test_e6_mixtral_all_experts_resident():
    inp = plan_input("mixtral-8x7b", inference=memory.InferenceInput(activation_gib=1))
    assert gib(memory.model_weight_bytes(inp.count, "bf16")) == pytest.approx(86.99, abs=0.005)
    h100 = memory.plan_gpu(inp, gpus.find_gpu("h100"))
    assert (h100.gpus, h100.tp) == (2, 2)
    h200 = memory.plan_gpu(inp, gpus.find_gpu("h200"))
    assert (h200.gpus, h200.budget_gib) == (1, 126.9)
    free = 126.9 * GIB - h200.per_gpu.weights - h200.per_gpu.activations - h200.per_gpu.overhead
    assert gib(free) == pytest.approx(38, abs=1)  # ~38 GiB KV
    assert memory.plan_gpu(inp, gpus.find_gpu("mi300x")).gpus == 1
    fp8 = replace(inp, precision="fp8")
    assert gib(memory.model_weight_bytes(fp8.count, "fp8")) == pytest.approx(43.5, abs=0.01)
    assert memory.plan_gpu(fp8, gpus.find_gpu("h100")).gpus == 1


# ------------------------------------------------------------------------------------------------ §4, §8 E7–E9


def test_e7_model_states_and_zero_stages():
    n = 8_030_261_248  # Llama-3-8B
    per = memory.model_state_bytes_per_param("adamw", "bf16")
    assert sum(per.values()) == 16
    states = {k: v * n for k, v in per.items()}
    assert gib(sum(states.values())) == pytest.approx(119.66, abs=0.005)
    expect = {1: 41.13, 2: 28.05, 3: 14.96}  # 4Ψ+12Ψ/8, 2Ψ+14Ψ/8, 16Ψ/8
    for stage, value in expect.items():
        assert gib(sum(memory.zero_shard(states, stage, 8).values())) == pytest.approx(value, abs=0.005)
    gpu, _ = memory.deepspeed_zero2_cold(n, 8)
    assert gib(gpu) == pytest.approx(44.87, abs=0.005)  # DeepSpeed estimator 4Ψ+16Ψ/8
    assert gib(memory.weight_bytes(n, "bf16") * 4) == pytest.approx(59.83, abs=0.005)  # accelerate 8Ψ


def test_e7_korthikanti_activations():
    per_layer = memory.training_activation_bytes_per_layer(4096, 1, 4096, 32, flash_attention=False)
    assert gib(per_layer) == pytest.approx(3.03, abs=0.005)  # sbh(34 + 5as/h)
    assert gib(32 * per_layer) == pytest.approx(97, abs=0.5)
    flash = memory.training_activation_bytes_per_layer(4096, 1, 4096, 32)
    assert flash == 34 * 4096 * 4096  # selective / flash: 34sbh
    assert gib(32 * flash) == pytest.approx(17, abs=0.1)
    ckpt = memory.training_activation_bytes_per_layer(4096, 1, 4096, 32, checkpointing=True)
    assert gib(32 * ckpt) == 1.0  # 2sbh per layer
    tp = memory.training_activation_bytes_per_layer(4096, 1, 4096, 32, tp=8, flash_attention=False)
    assert tp == 4096 * 4096 * (10 + 24 / 8 + 5 * 32 * 4096 / (4096 * 8))
    assert gib(memory.logits_bytes(4096, 1, 128256)) == pytest.approx(2, abs=0.05)


def test_e7_full_finetune_on_8_h100():
    base = memory.TrainingInput(activation_checkpointing=True, zero_stage=3)
    inp = plan_input("llama-3-8b", workload="training", training=base)
    bd = memory.per_gpu_breakdown(inp, tp=1, dp=8)
    assert gib(bd.total) == pytest.approx(19, abs=0.1)  # 15 + 1 + 1 (O) + 2 (logits)
    assert bd.total < 0.9 * 80 * GIB
    no_recompute = replace(inp, training=replace(base, activation_checkpointing=False, flash_attention=False))
    states, _ = memory.deepspeed_zero2_cold(inp.count.total, 8)
    acts = 32 * memory.training_activation_bytes_per_layer(4096, 1, 4096, 32, flash_attention=False)
    assert gib(states + acts) > 80  # ZeRO-2 + no recompute (45 + 97) does not fit
    assert memory.per_gpu_breakdown(no_recompute, tp=1, dp=8).total > 80 * GIB


def test_e8_qlora_65b_fits_one_48gb_gpu():
    llama_65b = {"model_type": "llama", "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
                 "intermediate_size": 22016, "vocab_size": 32000}  # LLaMA-65B shape (not in the reference table)
    s, _ = params.shape_from_config(llama_65b)
    count = params.count_params(s)
    assert count.total / 1e9 == pytest.approx(65.2, abs=0.1)
    inp = memory.PlanInput(shape=s, count=count, precision="nf4-dq", workload="finetune",
                           training=memory.TrainingInput(finetune="lora", activation_checkpointing=True,
                                                         seq_len=2048))
    lay = memory.plan_gpu(inp, gpus.find_gpu("l40s"))
    assert (lay.fits, lay.gpus) == (True, 1)
    assert gib(lay.per_gpu.weights) == pytest.approx(31.3 + 1.0, abs=0.8)  # NF4 linears + 16-bit embeddings


def test_e9_deepspeed_zero2_cold_3b():
    assert memory.deepspeed_zero2_cold(3_000_000_000, 8, 1) == (18.0e9, 144.0e9)


def test_lora_trains_only_adapters():
    s = shape("llama-2-7b")
    r = 16
    per_layer = r * ((4096 + 4096) * 4 + 3 * (4096 + 11008))
    assert memory.lora_params(s, r) == 32 * per_layer
    inp = plan_input("llama-2-7b", workload="finetune", training=memory.TrainingInput(finetune="lora"))
    bd = memory.per_gpu_breakdown(inp)
    assert bd.gradients == 2 * 32 * per_layer
    assert bd.optimizer == 12 * 32 * per_layer


def test_optimizer_bytes_and_full_training_needs_16_or_32_bit():
    assert sum(memory.model_state_bytes_per_param("adamw8bit", "bf16").values()) == 10
    assert sum(memory.model_state_bytes_per_param("sgd", "bf16").values()) == 8
    assert sum(memory.model_state_bytes_per_param("adamw", "fp32").values()) == 16
    with pytest.raises(UserError, match="--precision: full training"):
        memory.model_state_bytes_per_param("adamw", "nf4-dq")
    with pytest.raises(UserError, match="--optimizer"):
        memory.model_state_bytes_per_param("lion", "bf16")


def test_training_layout_prefers_zero_sharding_then_tp_without_zero():
    inp = plan_input("llama-3-8b", workload="training",
                     training=memory.TrainingInput(activation_checkpointing=True))
    lay = memory.plan_gpu(inp, gpus.find_gpu("h100"))
    assert (lay.gpus, lay.tp, lay.dp) == (2, 1, 2)
    no_zero = replace(inp, training=replace(inp.training, zero_stage=0))
    lay0 = memory.plan_gpu(no_zero, gpus.find_gpu("h100"))
    assert (lay0.dp, lay0.tp) == (1, lay0.gpus)


# ------------------------------------------------------------------------------------------------ layouts


def test_smallest_multi_node_layout_uses_pp_across_nodes():
    s = shape("llama-3-70b")
    count = params.ParamCount(total=405_000_000_000, active=405_000_000_000, embedding=0,
                              linear=405_000_000_000, per_layer=0, attention_per_layer=0, mlp_per_layer=0)
    inp = memory.PlanInput(shape=s, count=count)
    lay = memory.plan_gpu(inp, gpus.find_gpu("h100"))
    assert (lay.gpus, lay.tp, lay.pp, lay.nodes) == (16, 8, 2, 2)  # 754 GiB: TP fills the node, then 2 stages
    assert gib(lay.per_gpu.weights) == pytest.approx(405e9 * 2 / 16 / GIB)


def test_nothing_fits_says_so():
    inp = replace(plan_input("llama-2-70b"), max_nodes=1)
    lay = memory.plan_gpu(inp, gpus.find_gpu("a100-40gb"), gpus_per_node=2)
    assert not lay.fits
    assert "does not fit in 1 nodes × 2 GPUs" in lay.notes[0]
    assert memory.choose([lay], [gpus.find_gpu("a100-40gb")]) is None


def test_choose_fewest_gpus_then_smallest_card():
    inp = plan_input("llama-2-7b")
    selected = [gpus.find_gpu(g) for g in ("h100", "a100-40gb", "l40s")]
    assert memory.choose(memory.plan(inp, selected), selected).gpu == "a100-40gb"


@pytest.mark.parametrize(("field", "change"), [
    ("--batch", {"inference": memory.InferenceInput(batch=0)}),
    ("--context", {"inference": memory.InferenceInput(context=-1)}),
    ("--kv-precision", {"inference": memory.InferenceInput(kv_precision="fp3")}),
    ("--micro-batch", {"workload": "training", "training": memory.TrainingInput(micro_batch=0)}),
    ("--seq-len", {"workload": "finetune", "training": memory.TrainingInput(seq_len=0)}),
    ("--memory-fraction", {"memory_fraction": 1.5}),
    ("--overhead-gib", {"overhead_gib": -1}),
    ("--precision", {"precision": "fp5"}),
])
def test_bad_inputs_name_the_option(field, change):
    inp = replace(plan_input("llama-2-7b"), **change)
    with pytest.raises(UserError) as exc:
        memory.validate(inp)
    assert str(exc.value).startswith(field)
    assert exc.value.exit_code == 2


# ------------------------------------------------------------------------------------------------ §7 catalog


def test_catalog_numbers_and_sources():
    by_id = {g.id: g for g in gpus.catalog()}
    expect = {"a100-40gb": (40, 312, 1.555), "a100-80gb": (80, 312, 2.039), "a100-80gb-pcie": (80, 312, 1.935),
              "h100-sxm": (80, 989, 3.35), "h100-pcie": (80, 756, 2.0), "h100-nvl": (94, 835, 3.9),
              "h200": (141, 989, 4.8), "gh200-96gb": (96, 989, 4.0), "gh200-144gb": (144, 989, 4.9),
              "l40s": (48, 362.05, 0.864), "mi300x": (192, 1307.4, 5.3), "b200": (192, 2250, 7.7)}
    assert set(expect) <= set(by_id)
    for gid, (mem, tflops, bw) in expect.items():
        g = by_id[gid]
        assert (g.memory_gb, g.bf16_dense_tflops, g.bandwidth_tbps) == (mem, tflops, bw)
        assert g.source
    assert by_id["a100-40gb"].usable_gib == 39.49  # deviceQuery 42,405,855,232 B
    assert by_id["l40s"].pcie_only and not by_id["h100-sxm"].pcie_only
    raw = (gpus.DATA / "gpus.yml").read_text()
    assert "[not re-fetched]" in raw


def test_find_gpu_aliases_and_unknown():
    assert gpus.find_gpu("H100").id == "h100-sxm"
    assert gpus.find_gpu("L40S 48GB").id == "l40s"
    with pytest.raises(UserError, match="--gpu: unknown GPU 'h900'"):
        gpus.find_gpu("h900")


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_table(capsys):
    rc, out = run(["--model", "llama-2-70b", "--gpu", "h100", "--gpu", "mi300x"], capsys)
    assert rc == 0
    assert "H100 SXM 80GB" in out and "weights" in out and "128.48" in out
    assert "smallest: 1 × AMD Instinct MI300X 192GB" in out


def test_cli_json(capsys):
    rc, out = run(["--model", "llama-2-70b", "--gpu", "h100", "--json"], capsys)
    data = json.loads(out)
    assert rc == 0
    assert data["params"]["total"] == 68_976_648_192
    assert data["breakdown_gib"]["weights"] == pytest.approx(128.48, abs=0.005)
    assert (data["chosen"]["gpus"], data["chosen"]["tp"]) == (2, 2)
    assert data["layouts"][0]["per_gpu_gib"]["total"] <= 72


def test_cli_config_file_and_training_json(tmp_path, capsys):
    f = tmp_path / "config.json"
    f.write_text(json.dumps(gpus.find_model("llama-3-8b")[1]["config"]))
    rc, out = run(["--config", str(f), "--workload", "finetune", "--finetune", "lora", "--precision", "nf4-dq",
                   "--optimizer", "adamw8bit", "--micro-batch", "2", "--seq-len", "2048",
                   "--activation-checkpointing", "--gpu", "l40s", "--json"], capsys)
    data = json.loads(out)
    assert rc == 0
    assert data["params"]["total"] == 8_030_261_248
    assert data["inputs"]["finetune"] == "lora" and data["params"]["lora_trainable"] > 0
    assert data["chosen"]["gpus"] == 1


def test_cli_params_only_states_the_assumed_shape(capsys):
    rc, out = run(["--params", "70B", "--json", "--gpu", "h100"], capsys)
    data = json.loads(out)
    assert rc == 0
    assert data["params"]["total"] == 70_000_000_000
    assert any("llama-3-70b" in n for n in data["notes"])


PULUMI_KEYS = {"baremetal:clusterName", "baremetal:backend", "baremetal:nodeCount", "baremetal:gpuModel",
               "baremetal:gpusPerNode", "baremetal:fabric", "baremetal:mtu"}


def test_cli_pulumi_config(capsys):
    rc, out = run(["--model", "llama-2-70b", "--gpu", "h100", "--pulumi-config", "--cluster-name", "llm",
                   "--fabric", "infiniband"], capsys)
    assert rc == 0
    doc = yaml.safe_load(out)
    assert set(doc) == {"config"}
    assert doc["config"] == {"baremetal:clusterName": "llm", "baremetal:backend": "redfish",
                             "baremetal:nodeCount": 1, "baremetal:gpuModel": "H100-SXM5-80GB",
                             "baremetal:gpusPerNode": 8, "baremetal:fabric": "infiniband", "baremetal:mtu": 9000}


def test_cli_pulumi_config_passes_the_declare_stage_validator(capsys, project_root):
    """Merge the snippet into the shipped OCI example stack and validate it with the declare stage's own loader."""
    rc, out = run(["--model", "mixtral-8x7b", "--gpu", "h100", "--pulumi-config", "--backend", "oci",
                   "--mtu", "4220", "--cluster-name", "mixtral"], capsys)
    assert rc == 0
    assert "# baremetal:oci shape: BM.GPU.H100.8" in out
    snippet = yaml.safe_load(out)["config"]
    assert set(snippet) == PULUMI_KEYS
    stack = yaml.safe_load((project_root / "pulumi" / "Pulumi.oci-example.yaml").read_text())["config"]
    stack.update(snippet)
    data = {k.split(":", 1)[1]: v for k, v in stack.items() if k.startswith("baremetal:")}
    cluster = declare_config.from_dict(data)
    assert (cluster.node_count, cluster.gpu_model, cluster.gpus_per_node, cluster.mtu) == (1, "H100-SXM5-80GB", 8, 4220)


def test_declare_model_spelling_matches_the_oci_shapes():
    by_model = {spec.gpu_model: spec.gpu_count for spec in declare_config.GPU_SHAPES.values()}
    for gid in ("a100-40gb", "a100-80gb", "h100-sxm", "h200", "l40s", "mi300x", "b200"):
        g = gpus.find_gpu(gid)
        assert by_model[g.declare_model] == g.gpus_per_node


def test_cli_pulumi_config_rejects_what_the_declare_stage_would(capsys):
    with pytest.raises(UserError, match="--backend: no OCI bare-metal shape"):
        run(["--model", "llama-2-7b", "--gpu", "h100-pcie", "--pulumi-config", "--backend", "oci"], capsys)
    with pytest.raises(UserError, match="--mtu"):
        run(["--model", "llama-2-7b", "--gpu", "h100", "--pulumi-config", "--mtu", "100"], capsys)
    with pytest.raises(UserError, match="--cluster-name"):
        run(["--model", "llama-2-7b", "--gpu", "h100", "--pulumi-config", "--cluster-name", "My_Cluster"], capsys)


def test_cli_pulumi_config_multi_node(capsys):
    rc, out = run(["--params", "405B", "--gpu", "h100", "--pulumi-config"], capsys)
    assert rc == 0
    assert yaml.safe_load(out)["config"]["baremetal:nodeCount"] == 2


def test_cli_nothing_fits_exit_1(capsys):
    rc, out = run(["--model", "llama-2-70b", "--gpu", "a100-40gb", "--gpus-per-node", "2", "--max-nodes", "1"],
                  capsys)
    assert rc == 1
    assert "no layout fits" in out
    with pytest.raises(UserError) as exc:
        run(["--model", "llama-2-70b", "--gpu", "a100-40gb", "--gpus-per-node", "2", "--max-nodes", "1",
             "--pulumi-config"], capsys)
    assert exc.value.exit_code == 1


@pytest.mark.parametrize(("argv", "field"), [
    (["--params", "0"], "--params"),
    (["--params=-3B"], "--params"),
    (["--model", "llama-2-7b", "--batch", "0"], "--batch"),
    (["--model", "llama-2-7b", "--context", "-5"], "--context"),
    (["--model", "llama-2-7b", "--precision", "fp5"], "--precision"),
    (["--model", "llama-2-7b", "--gpu", "h900"], "--gpu"),
    (["--model", "llama-2-7b", "--kv-precision", "int3"], "--kv-precision"),
    (["--model", "nope"], "--model"),
    (["--model", "llama-2-7b", "--gpus-per-node", "0"], "--gpus-per-node"),
    (["--model", "llama-2-7b", "--workload", "training", "--precision", "int4"], "--precision"),
])
def test_cli_bad_input_exit_2_one_line(argv, field, capsys):
    with pytest.raises(UserError) as exc:
        run(argv, capsys)
    assert exc.value.exit_code == 2
    msg = str(exc.value)
    assert field in msg and "\n" not in msg


def test_cli_missing_config_field(tmp_path, capsys):
    f = tmp_path / "config.json"
    f.write_text(json.dumps({"hidden_size": 4096}))
    with pytest.raises(UserError, match=re.escape('config.json is missing "num_hidden_layers"')):
        run(["--config", str(f)], capsys)


def test_help_mentions_every_workload():
    parser = argparse.ArgumentParser(prog="baremetal")
    sub = parser.add_subparsers(dest="cmd")
    text = cli.add_plan_parser(sub).format_help()
    for word in ("--workload", "--kv-precision", "--optimizer", "--pulumi-config", "docs/planner.md"):
        assert word in text
    assert math.isclose(memory.GIB, 2**30)
