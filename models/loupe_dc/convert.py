"""Convert a Dense Connector checkpoint (official layout) into a Loupe model pack.

    python -m loupe_dc.convert --checkpoint runs/dci/checkpoint --out ../build/models/builtin-shapes

A pack is a folder: vision_encoder.onnx (pixels -> projected visual tokens, connector and projector
inside), embed_tokens.onnx, decoder_model_merged.onnx (inputs_embeds + KV cache), tokenizer.json,
tokenizer_config.json and manifest.json (see docs/model-pack.md). This is the converter's core (fp32).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from dataclasses import asdict

from .modeling import DenseConnectorMLLM, load_checkpoint
from .packfiles import publish, sha256
from .templates import CONV_MODES

OPSET = 17
PACK_FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int4")
EXTERNAL_DATA_BYTES = 1 << 30  # graphs with more weights than this keep them in one `<graph>_data` file


def _graph_dir(tmp: Path, name: str) -> Path:
    """Each graph is exported into its own folder: big models come out with one file per tensor."""
    d = tmp / f".{name}.d"
    d.mkdir()
    return d / name


def _weights_bytes(m) -> int:
    import numpy as np
    from onnx import helper

    return sum(helper.tensor_dtype_to_np_dtype(t.data_type).itemsize * int(np.prod(t.dims)) for t in m.graph.initializer)


def _save_graph(m, path: Path) -> None:
    import onnx

    for f in (path, path.with_name(path.name + "_data")):
        if f.exists():
            f.unlink()
    if _weights_bytes(m) > EXTERNAL_DATA_BYTES:
        onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + "_data", size_threshold=1024)
    else:
        onnx.save_model(m, str(path))


def _gather(tmp: Path, name: str) -> None:
    """Move an exported graph into the pack folder; loose external tensors become one `<name>_data` file."""
    import onnx

    d = tmp / f".{name}.d"
    if [f for f in d.iterdir() if f.name != name]:
        _save_graph(onnx.load(str(d / name)), tmp / name)
    else:
        os.replace(d / name, tmp / name)
    shutil.rmtree(d)


def apply_precision(tmp: Path, precision: str, keep_decoder: bool = False) -> None:
    """fp16: every graph's weights and arithmetic in fp16, inputs and outputs kept fp32 (Casts at the edges).
    int4: decoder MatMul weights 4-bit with onnxruntime's quantizer (block 32, symmetric, fp32 scales), its other
    weights fp32; vision encoder and embedding as fp16."""
    import onnx

    for name in ("vision_encoder.onnx", "embed_tokens.onnx") + (() if keep_decoder else ("decoder_model_merged.onnx",)):
        path = tmp / name
        m = onnx.load(str(path))
        if precision == "int4" and name == "decoder_model_merged.onnx":
            try:
                from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer as Quantizer
            except ImportError:  # onnxruntime < 1.21 names it MatMul4BitsQuantizer
                from onnxruntime.quantization.matmul_4bits_quantizer import MatMul4BitsQuantizer as Quantizer
            q = Quantizer(m, block_size=32, is_symmetric=True)
            q.process()
            m = q.model.model
        else:
            m = fp16_graph(m)
        _save_graph(m, path)
        del m


def fp16_graph(m):
    """A graph's weights and arithmetic in fp16, its inputs and outputs kept fp32 (Casts at the edges)."""
    from onnxconverter_common.float16 import convert_float_to_float16

    return convert_float_to_float16(m, keep_io_types=True, disable_shape_infer=_weights_bytes(m) > EXTERNAL_DATA_BYTES)


class VisionEncoder(nn.Module):
    def __init__(self, model: DenseConnectorMLLM):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # (N, 3, S, S) -> (N, tokens, D)
        return self.model.encode_images(pixel_values)


class EmbedTokens(nn.Module):
    def __init__(self, model: DenseConnectorMLLM):
        super().__init__()
        self.embed = model.llm.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, S) -> (B, S, D)
        return self.embed(input_ids)


class Decoder(nn.Module):
    """LlamaForCausalLM on inputs_embeds with a flat KV cache, as Optimum's merged decoder exposes it.

    The logits are the last position's only, (batch, 1, vocab): generation needs nothing else, and a prefill
    of 2,048 tokens would otherwise compute (and hand over) 2,048 × vocab of them (400 MB for a 49k vocabulary).
    Per-position logits (perplexity) come from running the tokens one step at a time (smollm2.PackLM).
    """

    def __init__(self, model: DenseConnectorMLLM):
        super().__init__()
        self.llm = model.llm
        self.num_layers = model.llm.config.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache.from_legacy_cache(tuple((past[2 * i], past[2 * i + 1]) for i in range(self.num_layers)))
        out = self.llm.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                             past_key_values=cache, use_cache=True, return_dict=True)
        logits = self.llm.lm_head(out.last_hidden_state[:, -1:, :])
        present = out.past_key_values.to_legacy_cache()
        return (logits, *[t for layer in present for t in layer])




def export_decoder(model: DenseConnectorMLLM, tmp: Path) -> None:
    """The LLM as one graph over inputs_embeds with a KV cache (torch.onnx.export of the transformers model)."""
    llm_cfg = model.llm.config
    kv_heads, L = llm_cfg.num_key_value_heads, llm_cfg.num_hidden_layers
    head_dim = llm_cfg.hidden_size // llm_cfg.num_attention_heads
    past_len, seq = 3, 2
    past = [torch.randn(1, kv_heads, past_len, head_dim) for _ in range(2 * L)]
    emb = torch.randn(1, seq, llm_cfg.hidden_size)
    mask = torch.ones(1, past_len + seq, dtype=torch.long)
    pos = torch.arange(past_len, past_len + seq).unsqueeze(0)
    past_names = [f"past_key_values.{i}.{kv}" for i in range(L) for kv in ("key", "value")]
    present_names = [f"present.{i}.{kv}" for i in range(L) for kv in ("key", "value")]
    dyn = {"inputs_embeds": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"},
           "logits": {0: "batch_size"}}
    dyn.update({n: {0: "batch_size", 2: "past_sequence_length"} for n in past_names})
    dyn.update({n: {0: "batch_size", 2: "total_sequence_length"} for n in present_names})
    torch.onnx.export(Decoder(model), (emb, mask, pos, *past), _graph_dir(tmp, "decoder_model_merged.onnx"), opset_version=OPSET,
                      input_names=["inputs_embeds", "attention_mask", "position_ids", *past_names],
                      output_names=["logits", *present_names], dynamic_axes=dyn)


def adopt_builder_decoder(src: Path, tmp: Path, llm_cfg) -> bool:
    """Copy a model-builder decoder into the pack after checking it fits; returns whether it takes position_ids."""
    import onnx

    cfg_path, graph = src / "genai_config.json", src / "model.onnx"
    if not cfg_path.exists() or not graph.exists():
        raise ValueError(f"{src} is not an onnxruntime-genai model folder (genai_config.json and model.onnx expected)")
    dec = json.loads(cfg_path.read_text())["model"]["decoder"]
    want = {"hidden_size": llm_cfg.hidden_size, "num_hidden_layers": llm_cfg.num_hidden_layers,
            "num_key_value_heads": llm_cfg.num_key_value_heads, "head_size": llm_cfg.hidden_size // llm_cfg.num_attention_heads}
    wrong = {k: (dec.get(k), v) for k, v in want.items() if dec.get(k) != v}
    if wrong:
        raise ValueError(f"{src} was built from another model: {wrong} (builder, checkpoint)")
    m = onnx.load(str(graph), load_external_data=False)
    inputs = {i.name for i in m.graph.input}
    if "inputs_embeds" not in inputs:
        raise ValueError(f"{src}/model.onnx takes input_ids: rebuild it with --extra_options exclude_embeds=true")
    data = {d.value for t in m.graph.initializer for d in t.external_data if d.key == "location"}
    for f in data:  # the graph names its external data file, which keeps its name beside the renamed graph
        shutil.copy(src / f, tmp / f)
    shutil.copy(graph, tmp / "decoder_model_merged.onnx")
    return "position_ids" in inputs


def export_pack(model: DenseConnectorMLLM, ckpt_cfg: dict, checkpoint: Path, out: Path, name: str, version: str,
                license_: str, description: str, domain: str | None, precision: str = "fp32",
                official: dict | None = None, release_weights: bool = False, decoder_from: Path | None = None) -> dict:
    """official: {"pre": vision preprocessing, "conv_mode": str | None} for released checkpoints (loupe_dc.official).
    release_weights: free the PyTorch weights once the graphs are exported (peak memory of big models).
    decoder_from: an onnxruntime-genai model-builder folder (built with exclude_embeds=true) whose decoder the
    pack uses instead of exporting one (fused GroupQueryAttention, the builder's own MatMulNBits quantization)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
    llm_cfg = model.llm.config
    tower = model.vision.config
    image_size = tower.image_size
    is_siglip = "siglip" in tower.model_type
    steps = 4 if precision == "fp32" else 5
    pre_path = Path(checkpoint / ckpt_cfg["mm_vision_tower"]) / "preprocessor_config.json"
    if is_siglip:  # the reference's SigLIP processor is fixed whatever the checkpoint says
        mean, std, resample = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], "bicubic"
    else:
        pre = json.loads(pre_path.read_text()) if pre_path.exists() else {}
        mean = pre.get("image_mean", [0.48145466, 0.4578275, 0.40821073])
        std = pre.get("image_std", [0.26862954, 0.26130258, 0.27577711])
        resample = "bicubic"
    pad_color = [round(m * 255) for m in mean]  # the built-in model's letterbox (shapes.py) rounds
    rescale = 1 / 255
    if official is not None:
        mean, std, resample, pad_color = (official["pre"][k] for k in ("mean", "std", "resample", "padColor"))
        rescale = official["pre"].get("rescale", rescale)
    from .official import pack_preprocess

    preprocess = pack_preprocess({"resample": resample, "rescale": rescale})
    kv_heads = llm_cfg.num_key_value_heads
    head_dim = llm_cfg.hidden_size // llm_cfg.num_attention_heads
    L = llm_cfg.num_hidden_layers

    tmp = Path(tempfile.mkdtemp(prefix=".pack-", dir=out.parent))
    try:
        # The tokenizer first: a checkpoint whose tokenizer cannot be converted fails before minutes of export.
        if official is not None:
            from .official import prompt_config, tokenizer_files

            tokenizer_files(checkpoint, tmp)
            prompt = prompt_config(checkpoint, tmp, ckpt_cfg, official.get("conv_mode"))
        else:
            prompt = None
            for f in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(checkpoint / f, tmp / f)
        with torch.no_grad():
            px = torch.randn(2, 3, image_size, image_size)
            tokens = VisionEncoder(model)(px).shape[1]
            print(f"[1/{steps}] vision encoder: {image_size}px -> {tokens} tokens x {llm_cfg.hidden_size}", file=sys.stderr)
            torch.onnx.export(VisionEncoder(model), (px,), _graph_dir(tmp, "vision_encoder.onnx"), opset_version=OPSET,
                              input_names=["pixel_values"], output_names=["image_features"],
                              dynamic_axes={"pixel_values": {0: "num_images"}, "image_features": {0: "num_images"}})
            _gather(tmp, "vision_encoder.onnx")
            print(f"[2/{steps}] token embedding", file=sys.stderr)
            ids = torch.tensor([[1, 2, 3]])
            torch.onnx.export(EmbedTokens(model), (ids,), _graph_dir(tmp, "embed_tokens.onnx"), opset_version=OPSET,
                              input_names=["input_ids"], output_names=["inputs_embeds"],
                              dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                            "inputs_embeds": {0: "batch_size", 1: "sequence_length"}})
            _gather(tmp, "embed_tokens.onnx")
            if decoder_from is None:
                print(f"[3/{steps}] decoder with KV cache", file=sys.stderr)
                export_decoder(model, tmp)
                uses_position_ids = True
        if decoder_from is not None:
            print(f"[3/{steps}] decoder with KV cache from {decoder_from} (onnxruntime-genai model builder)", file=sys.stderr)
            uses_position_ids = adopt_builder_decoder(decoder_from, tmp, llm_cfg)
        if release_weights:  # the graphs hold the weights now; drop PyTorch's copy before post-processing
            for p in model.parameters():
                p.data = torch.empty(0)
        if decoder_from is None:
            _gather(tmp, "decoder_model_merged.onnx")
        if precision != "fp32":
            print(f"[4/{steps}] {precision}: " + ("fp16 weights and compute, fp32 inputs/outputs" if precision == "fp16" else
                  "decoder MatMuls 4-bit (MatMulNBits, block 32, symmetric), vision and embedding fp16"), file=sys.stderr)
            apply_precision(tmp, precision, keep_decoder=decoder_from is not None)
        print(f"[{steps}/{steps}] manifest", file=sys.stderr)
        tok_cfg = json.loads((tmp / "tokenizer_config.json").read_text())
        tok = json.loads((tmp / "tokenizer.json").read_text())
        vocab = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
        eos_token = tok_cfg["eos_token"]
        files = {}
        for f in sorted(tmp.iterdir()):
            files[f.name] = {"sha256": sha256(f), "bytes": f.stat().st_size}
        manifest = {
            "format": "loupe-model-pack",
            "formatVersion": PACK_FORMAT_VERSION,
            "name": name,
            "version": version,
            "license": license_,
            "description": description,
            "domain": domain,
            "precision": precision,
            "vision": {
                "tower": "siglip" if is_siglip else "clip",
                "imageSize": image_size,
                "mean": mean,
                "std": std,
                "padColor": pad_color,
                "resample": resample,
                "preprocess": preprocess,
                "connector": model.kind,
                "connectorLayers": ckpt_cfg.get("mm_dense_connector_layers") if official is None else asdict(model.layers),
                "tokensPerImage": tokens,
                "tokensPerFrame": tokens // 2,
                "temporalPooling": "max2",
            },
            "decoder": {
                "hiddenSize": llm_cfg.hidden_size,
                "numLayers": L,
                "numKeyValueHeads": kv_heads,
                "headDim": head_dim,
                "vocabSize": llm_cfg.vocab_size,
                "contextLength": llm_cfg.max_position_embeddings,
                "usesPositionIds": uses_position_ids,
            },
            "prompt": prompt or {
                "chatTemplate": tok_cfg["chat_template"],
                "imageToken": "<image>",
                "bosToken": tok_cfg.get("bos_token"),
                "eosToken": eos_token,
                "eosTokenIds": [vocab[eos_token]] if eos_token in vocab else [llm_cfg.eos_token_id],
                "addBos": tok_cfg.get("add_bos_token", True),
            },
            "defaults": {"frames": 8, "maxNewTokens": 64},
            "files": files,
        }
        publish(tmp, out, manifest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--vision-tower", type=Path, help="the vision tower folder (released checkpoints name a Hub id)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32")
    ap.add_argument("--conv-mode", choices=CONV_MODES, help="released checkpoints: the conversation "
                    "template (default: llama_3 for Llama-3 tokenizers, chatml_direct for ChatML ones, vicuna_v1 otherwise)")
    ap.add_argument("--decoder-from", type=Path, help="use this onnxruntime-genai model-builder folder's decoder "
                    "(python -m onnxruntime_genai.models.builder ... --extra_options exclude_embeds=true)")
    ap.add_argument("--name", default=None)
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--license", default=None)
    ap.add_argument("--description", default=None)
    ap.add_argument("--domain", default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from .official import CheckpointError, is_official_release, load_official

    official = is_official_release(args.checkpoint) or not (args.checkpoint / "config.json").exists()
    try:
        if official:
            model, cfg, pre = load_official(args.checkpoint, args.vision_tower)
            extra = {"pre": pre, "conv_mode": args.conv_mode}
            defaults = (args.checkpoint.resolve().name, "see the checkpoint's model card",
                        f"Dense Connector ({cfg['mm_dense_connector_type'].upper()}) converted from {args.checkpoint.resolve().name}.", None)
        else:
            model, cfg = load_checkpoint(args.checkpoint, args.vision_tower)
            extra = None
            defaults = ("builtin-shapes", "MIT", "Built-in Dense Connector (DCI) model trained on synthetic still images of shapes.",
                        "synthetic flat shapes (circle, square, triangle) in eight colors")
    except (CheckpointError, FileNotFoundError, ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    name, license_, description, domain = (v if v is not None else d for v, d in
                                           zip((args.name, args.license, args.description, args.domain), defaults))
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        m = export_pack(model, cfg, args.checkpoint, args.out, name, args.version, license_, description, domain,
                        precision=args.precision, official=extra, release_weights=official, decoder_from=args.decoder_from)
    except (CheckpointError, FileNotFoundError, ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    print(f"pack written to {args.out} ({sum(f['bytes'] for f in m['files'].values()) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
