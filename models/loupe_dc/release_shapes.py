"""Random-weight checkpoints in the exact layouts and shapes of the Dense Connector releases, without a download.

    python -m loupe_dc.release_shapes --size 7b --out DIR      # DIR/checkpoint (release layout) + DIR/tower
    python -m loupe_dc.release_shapes --size 8b --out DIR --layers 2   # real widths, 2 layers (parity tests)

- 7b: DenseConnector-v1.5-7B, Vicuna-7B v1.5 (32 layers, hidden 4096, MLP 11008, 32 heads, vocabulary 32,000)
- 8b: DenseConnector-v1.5-8B, Llama-3-8B-Instruct (32 layers, hidden 4096, MLP 14336, 32 query / 8 key-value
  heads, vocabulary 128,256, rope theta 500,000)
- 13b: DenseConnector-v1.5-13B, Vicuna-13B v1.5 (40 layers, hidden 5120, MLP 13824, 40 heads)
- the tower: google/siglip-so400m-patch14-384 (27 layers, hidden 1152, MLP 4304, 16 heads, 384 px, patch 14), as
  its own folder; DCI projector (mlp2x_gelu, 3 × 1152 -> hidden -> hidden) inside the checkpoint.

The language model is written shard by shard (fp16 safetensors, ≤ 2 GB each, with model.safetensors.index.json
as the releases have it): one shard's tensors are in memory at a time, each drawn from a seeded generator, so a
7B checkpoint costs about 2 GB of RAM to write, never the model. The tower (400M parameters) is built whole.
Tokenizers are the tiny checkpoints' (loupe_dc.tiny), padded with filler pieces to the release's vocabulary.
Random weights answer nonsense; the time and memory they cost are the real ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SHAPES = {
    "7b": dict(llm="vicuna", hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=32, vocab=32000,
               max_positions=4096, rope_theta=10000.0, eps=1e-5),
    "8b": dict(llm="llama3", hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, vocab=128256,
               max_positions=8192, rope_theta=500000.0, eps=1e-5),
    "13b": dict(llm="vicuna", hidden=5120, intermediate=13824, layers=40, heads=40, kv_heads=40, vocab=32000,
                max_positions=4096, rope_theta=10000.0, eps=1e-5),
    # not a release: the streaming path's test (an fp32 LLM of 0.7 GB, grouped-query attention, the tiny tower)
    "test": dict(llm="vicuna", hidden=1024, intermediate=2816, layers=8, heads=16, kv_heads=4, vocab=32000,
                 max_positions=4096, rope_theta=10000.0, eps=1e-5, tower="tiny"),
}
SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                     image_size=384, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
TOWER_ID = "google/siglip-so400m-patch14-384"
SHARD_BYTES = 2 * 1024 ** 3


def tower_hidden(shape: dict) -> int:
    return 32 if shape.get("tower") == "tiny" else SIGLIP_SO400M["hidden_size"]


def llm_tensors(shape: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, init) of a LLaVA-Llama checkpoint's language model and projector, in the releases' order."""
    h, m, v = shape["hidden"], shape["intermediate"], shape["vocab"]
    d = h // shape["heads"]
    kv = shape["kv_heads"] * d
    out: list[tuple[str, tuple[int, ...], str]] = [("model.embed_tokens.weight", (v, h), "normal")]
    for i in range(shape["layers"]):
        p = f"model.layers.{i}."
        out += [(p + "self_attn.q_proj.weight", (h, h), "normal"), (p + "self_attn.k_proj.weight", (kv, h), "normal"),
                (p + "self_attn.v_proj.weight", (kv, h), "normal"), (p + "self_attn.o_proj.weight", (h, h), "normal"),
                (p + "mlp.gate_proj.weight", (m, h), "normal"), (p + "mlp.up_proj.weight", (m, h), "normal"),
                (p + "mlp.down_proj.weight", (h, m), "normal"),
                (p + "input_layernorm.weight", (h,), "ones"), (p + "post_attention_layernorm.weight", (h,), "ones")]
    out += [("model.norm.weight", (h,), "ones"), ("lm_head.weight", (v, h), "normal")]
    width = 3 * tower_hidden(shape)  # DCI: penultimate layer and two group means, on channels
    out += [("model.mm_projector.0.weight", (h, width), "normal"), ("model.mm_projector.0.bias", (h,), "zeros"),
            ("model.mm_projector.2.weight", (h, h), "normal"), ("model.mm_projector.2.bias", (h,), "zeros")]
    return out


def write_llm(ckpt: Path, shape: dict, seed: int) -> int:
    """The shards and their index; returns the bytes written. One shard in memory at a time."""
    import torch
    from safetensors.torch import save_file

    rng = np.random.default_rng(seed)
    tensors = llm_tensors(shape)
    total = sum(int(np.prod(s)) * 2 for _, s, _ in tensors)
    count = max(1, -(-total // SHARD_BYTES))
    shards: list[list[str]] = []
    pending: dict[str, "torch.Tensor"] = {}
    size = 0
    weight_map: dict[str, str] = {}

    def flush() -> None:
        nonlocal pending, size
        name = f"model-{len(shards) + 1:05d}-of-{count:05d}.safetensors"
        save_file(pending, str(ckpt / name), metadata={"format": "pt"})
        shards.append(list(pending))
        weight_map.update({k: name for k in pending})
        print(f"  {name}: {size / 2 ** 30:.2f} GiB", file=sys.stderr, flush=True)
        pending, size = {}, 0

    for name, dims, init in tensors:
        n = int(np.prod(dims))
        if size and size + 2 * n > SHARD_BYTES:
            flush()
        if init == "normal":  # Hugging Face's initializer_range; drawn in float32 rows to bound the scratch memory
            a = np.empty(dims, np.float16)
            flat = a.reshape(dims[0], -1)
            for r in range(0, dims[0], 1024):
                flat[r:r + 1024] = (rng.standard_normal(flat[r:r + 1024].shape, dtype=np.float32) * 0.02)
        else:
            a = (np.ones if init == "ones" else np.zeros)(dims, np.float16)
        pending[name] = torch.from_numpy(a)
        size += 2 * n
    if pending:
        flush()
    if len(shards) != count:  # the estimate of shard names was off: rename to the real count
        for i, keys in enumerate(shards):
            old = ckpt / weight_map[keys[0]]
            new = ckpt / f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            old.rename(new)
            weight_map.update({k: new.name for k in keys})
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return total


def write_tower(out: Path, seed: int) -> None:
    """SigLIP so400m as the Hub repository keeps it (a whole SiglipModel, fp16), with a 1-layer text side."""
    import torch
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(seed)
    text = dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=SIGLIP_SO400M)).half()
    model.save_pretrained(out, safe_serialization=True)
    size = SIGLIP_SO400M["image_size"]
    (out / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor", "processor_class": "SiglipProcessor",
        "resample": 3, "rescale_factor": 1 / 255, "size": {"height": size, "width": size}}, indent=2))


def pad_tokenizer(ckpt: Path, vocab: int, llm: str) -> dict[str, int]:
    """The tiny tokenizer, its vocabulary filled to `vocab` entries (Llama-3: specials at the end, as released)."""
    from tokenizers import Tokenizer

    from . import tiny

    if llm == "vicuna":
        tiny._llama2_tokenizer(ckpt)
    else:
        tiny._llama3_tokenizer(ckpt)
    spec = json.loads((ckpt / "tokenizer.json").read_text())
    words = spec["model"]["vocab"]
    added = spec["added_tokens"]
    if llm == "llama3":  # specials move to the top of the vocabulary: 128000..128255
        regular = {k: i for k, i in words.items() if k not in {a["content"] for a in added}}
        for i in range(len(regular), vocab - 256):
            regular[f"Ġfill{i}"] = i
        base = len(regular)
        names = [a["content"] for a in sorted(added, key=lambda a: a["id"])]
        names += [f"<|reserved_special_token_{i}|>" for i in range(3, 256 - len(names) + 3)]
        added = [{**added[0], "id": base + i, "content": c} for i, c in enumerate(names[:256])]
        spec["model"]["vocab"] = regular
        spec["added_tokens"] = added
        bos = next(a["id"] for a in added if a["content"] == "<|begin_of_text|>")
        for proc in spec["post_processor"].get("processors", []):
            if proc.get("type") == "TemplateProcessing":
                proc["special_tokens"]["<|begin_of_text|>"]["ids"] = [bos]
    else:
        for i in range(len(words), vocab):
            words[f"▁fill{i}"] = i
    (ckpt / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False))
    tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    if tok.get_vocab_size() != vocab:
        raise RuntimeError(f"padded tokenizer has {tok.get_vocab_size()} tokens, not {vocab}")
    return {a["content"]: a["id"] for a in spec["added_tokens"]}


def build(out: Path, size: str, layers: int | None = None, seed: int = 0) -> tuple[Path, Path]:
    shape = dict(SHAPES[size])
    if layers:
        shape["layers"] = layers
    ckpt, tower = out / "checkpoint", out / "tower"
    ckpt.mkdir(parents=True, exist_ok=True)
    tower.mkdir(parents=True, exist_ok=True)
    print(f"{size}: {shape['layers']} layers, hidden {shape['hidden']}, vocabulary {shape['vocab']}", file=sys.stderr)
    specials = pad_tokenizer(ckpt, shape["vocab"], shape["llm"])
    vicuna = shape["llm"] == "vicuna"
    bos, eos = (specials["<s>"], specials["</s>"]) if vicuna else (specials["<|begin_of_text|>"], specials["<|end_of_text|>"])
    total = write_llm(ckpt, shape, seed)
    config = {
        "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama", "torch_dtype": "float16",
        "vocab_size": shape["vocab"], "hidden_size": shape["hidden"], "intermediate_size": shape["intermediate"],
        "num_hidden_layers": shape["layers"], "num_attention_heads": shape["heads"],
        "num_key_value_heads": shape["kv_heads"], "max_position_embeddings": shape["max_positions"],
        "rms_norm_eps": shape["eps"], "rope_theta": shape["rope_theta"], "rope_scaling": None, "hidden_act": "silu",
        "initializer_range": 0.02, "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": 0 if vicuna else None,
        "tie_word_embeddings": False, "attention_bias": False, "pretraining_tp": 1, "use_cache": True,
        "mm_vision_tower": TOWER_ID, "mm_dense_connector_type": "dci", "mm_hidden_size": 3 * tower_hidden(shape),
        "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "image_aspect_ratio": "pad", "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
        "tune_mm_mlp_adapter": False, "freeze_mm_mlp_adapter": False, "tokenizer_padding_side": "right",
    }
    (ckpt / "config.json").write_text(json.dumps(config, indent=2))
    print(f"language model: {total / 2 ** 30:.1f} GiB fp16; the tower …", file=sys.stderr, flush=True)
    if shape.get("tower") == "tiny":
        from . import tiny

        tiny._tower("siglip", tower)
    else:
        write_tower(tower, seed)
    return ckpt, tower


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layers", type=int, help="fewer layers at the real widths (parity tests)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    build(args.out, args.size, args.layers, args.seed)


if __name__ == "__main__":
    main()
