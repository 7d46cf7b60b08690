"""Streaming conversion of a released Dense Connector checkpoint: the language model tensor by tensor.

    python -m loupe_dc.stream_convert --checkpoint DIR --vision-tower DIR --out PACK [--precision int4|fp32]
                                      [--kv-cache float32|int8]

`convert` loads the whole LLM in fp32 (27 GB for a 7B model, 32 GB for 8B) before it exports anything. This
converter never holds more than one weight matrix of the language model: it reads the safetensors shards one
tensor at a time, quantizes each projection to 4 bits (MatMulNBits, symmetric, block 32, accuracy level 4: int8
dot products on CPU) as it is read, and appends its bytes to the graph's external data file at once. The decoder
graph is written by hand, laid out as onnxruntime-genai's model builder lays out its decoders, which the engine
runs with one KV buffer bound as past and present:

    inputs_embeds, attention_mask, past_key_values.{i}.key/value  ->  logits (last position), present.{i}.*
    per layer: SimplifiedLayerNormalization -> MatMulNBits (q, k, v packed) -> GroupQueryAttention (rotary
    inside) -> MatMulNBits (o) -> SkipSimplifiedLayerNormalization -> gate/up MatMulNBits, SiLU, down MatMulNBits

The vision encoder (tower, Dense Connector, projector: 400M parameters for SigLIP so400m) is exported as
`convert` exports it, without the LLM, and stored in fp16. The embedding table is a Gather over fp16 rows.
`--precision fp32` keeps plain MatMuls (parity tests against transformers); `--kv-cache int8` then calibrates
an int8 cache (loupe_dc.kv_quant).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .packfiles import file_table, publish, staging

OPSET = 17
BLOCK = 32
ACCURACY_LEVEL = 4
CHUNK_ROWS = 8192  # output rows quantized at a time: bounds the fp32 scratch of a big matrix (the lm_head)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM where Linux has it (getrusage's maxrss carries a forking
    parent's size into a child that execs, VmHWM starts with the new program), else maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024 ** 2)


class Shards:
    """A checkpoint's tensors by name, read one at a time (or a few rows at a time) with plain reads.

    Not through safetensors' own loader: it memory-maps the shards, and every page a conversion reads then counts
    in the process's resident memory until the end (13.5 GB for a 7B model, file-backed but counted). The format
    is simple enough to read directly: an 8-byte header length, a JSON header of name -> dtype, shape and byte
    range, then the data.
    """

    DTYPES = {"F16": np.float16, "BF16": np.uint16, "F32": np.float32, "F64": np.float64}

    def __init__(self, checkpoint: Path):
        index = checkpoint / "model.safetensors.index.json"
        paths = sorted({checkpoint / f for f in json.loads(index.read_text())["weight_map"].values()}) if index.exists() \
            else sorted(checkpoint.glob("*.safetensors"))
        self.tensors: dict[str, tuple[Path, int, dict]] = {}
        for path in paths:
            with open(path, "rb") as f:
                size = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(size))
            for name, info in header.items():
                if name != "__metadata__":
                    self.tensors[name] = (path, 8 + size, info)
        if not self.tensors:
            raise ValueError(f"{checkpoint} holds no safetensors weights")

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def shape(self, name: str) -> list[int]:
        return list(self._info(name)[2]["shape"])

    def _info(self, name: str) -> tuple[Path, int, dict]:
        if name not in self.tensors:
            raise ValueError(f"the checkpoint lacks {name}")
        path, base, info = self.tensors[name]
        if info["dtype"] not in self.DTYPES:
            raise ValueError(f"{name} is {info['dtype']}: the streaming converter reads F16, BF16, F32 and F64")
        return path, base, info

    def get(self, name: str) -> np.ndarray:
        """The tensor in float32."""
        shape = self.shape(name)
        return self.rows(name, 0, shape[0]) if shape else self.rows(name, 0, 1).reshape(())

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of the tensor in float32, without reading the rest."""
        path, base, info = self._info(name)
        dtype = np.dtype(self.DTYPES[info["dtype"]])
        shape = info["shape"] or [1]
        row = int(np.prod(shape[1:])) * dtype.itemsize
        begin, end = info["data_offsets"]
        if end - begin != shape[0] * row or not 0 <= start <= stop <= shape[0]:
            raise ValueError(f"{name}: its byte range does not match its shape {shape} (a damaged shard)")
        with open(path, "rb") as f:
            f.seek(base + begin + start * row)
            raw = f.read((stop - start) * row)
        if len(raw) != (stop - start) * row:
            raise ValueError(f"{path.name} ends inside {name} (a truncated shard)")
        a = np.frombuffer(raw, dtype).reshape([stop - start, *shape[1:]])
        if info["dtype"] == "BF16":  # the high half of a float32
            return (a.astype(np.uint32) << 16).view(np.float32)
        return a.astype(np.float32)


class ExternalData:
    """One external data file, appended to tensor by tensor; each tensor points at its bytes."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "wb")
        self.offset = 0

    def begin(self, name: str, dtype: int, dims: list[int]) -> TensorProto:
        pad = -self.offset % 64
        if pad:
            self.file.write(b"\0" * pad)
            self.offset += pad
        t = TensorProto()
        t.name, t.data_type = name, dtype
        t.dims.extend(dims)
        t.data_location = TensorProto.EXTERNAL
        self._start = self.offset
        return t

    def write(self, data: np.ndarray) -> None:
        raw = np.ascontiguousarray(data).tobytes()
        self.file.write(raw)
        self.offset += len(raw)

    def end(self, t: TensorProto) -> TensorProto:
        for key, value in (("location", self.path.name), ("offset", str(self._start)), ("length", str(self.offset - self._start))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        return t

    def tensor(self, name: str, array: np.ndarray) -> TensorProto:
        t = self.begin(name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape))
        self.write(array)
        return self.end(t)

    def close(self) -> None:
        self.file.close()


def quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A torch-layout Linear weight (N, K) -> MatMulNBits' B (N, K/32, 16) uint8 and scales (N, K/32) float32."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    n, k = weight.shape
    blocks = -(-k // BLOCK)
    b_t = np.ascontiguousarray(weight.T)  # (K, N): the MatMul layout the quantizer reads
    if blocks * BLOCK != k:
        b_t = np.pad(b_t, ((0, blocks * BLOCK - k), (0, 0)))
    packed = np.zeros((n, blocks, BLOCK // 2), np.uint8)
    scales = np.zeros(n * blocks, np.float32)
    zero_points = np.zeros(n * ((blocks + 1) // 2), np.uint8)
    quantize_matmul_4bits(packed, b_t, scales, zero_points, BLOCK, n, k, True)
    return packed, scales.reshape(n, blocks)


class DecoderWriter:
    """The decoder graph, node by node; weights go to the external data file as they are made."""

    def __init__(self, shards: Shards, cfg: dict, data: ExternalData, precision: str):
        self.shards, self.cfg, self.data, self.precision = shards, cfg, data, precision
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []

    def linear(self, x: str, names: list[str], out: str) -> str:
        """x @ W.T for the row-wise concatenation of the named (N_i, K) weights, read and quantized in chunks."""
        shapes = [self.shards.shape(n) for n in names]
        k = shapes[0][1]
        n_total = sum(s[0] for s in shapes)
        if self.precision == "fp32":
            w = np.concatenate([self.shards.get(n) for n in names], axis=0).T
            self.inits.append(self.data.tensor(out + ".weight", np.ascontiguousarray(w)))
            self.nodes.append(helper.make_node("MatMul", [x, out + ".weight"], [out], name=out))
            return out
        blocks = -(-k // BLOCK)
        b = self.data.begin(out + ".qweight", TensorProto.UINT8, [n_total, blocks, BLOCK // 2])
        scales = []
        for name, (n, _) in zip(names, shapes):
            for start in range(0, n, CHUNK_ROWS):
                packed, s = quantize_rows(self.shards.rows(name, start, min(n, start + CHUNK_ROWS)))
                self.data.write(packed)
                scales.append(s)
        self.inits.append(self.data.end(b))
        self.inits.append(self.data.tensor(out + ".scales", np.concatenate(scales).reshape(-1)))
        self.nodes.append(helper.make_node("MatMulNBits", [x, out + ".qweight", out + ".scales"], [out], name=out,
                                           domain="com.microsoft", K=k, N=n_total, bits=4, block_size=BLOCK,
                                           accuracy_level=ACCURACY_LEVEL))
        return out

    def norm_weight(self, name: str, key: str) -> str:
        self.inits.append(self.data.tensor(key, self.shards.get(name).astype(np.float32)))
        return key

    def build(self) -> onnx.ModelProto:
        c = self.cfg
        h, L, heads, kv = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"]
        d = h // heads
        eps = float(c.get("rms_norm_eps", 1e-6))
        vocab = c["vocab_size"]
        theta = float(c.get("rope_theta", 10000.0))
        if c.get("rope_scaling"):
            raise ValueError(f"rope_scaling {c['rope_scaling']} is not supported by the streaming converter")
        positions = int(c.get("max_position_embeddings", 4096))
        inv = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
        angles = np.outer(np.arange(positions, dtype=np.float64), inv)
        self.inits += [helper.make_tensor("cos_cache", TensorProto.FLOAT, list(angles.shape), np.cos(angles).astype(np.float32).ravel()),
                       helper.make_tensor("sin_cache", TensorProto.FLOAT, list(angles.shape), np.sin(angles).astype(np.float32).ravel()),
                       helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
                       helper.make_tensor("one", TensorProto.INT64, [], [1]),
                       helper.make_tensor("index1", TensorProto.INT64, [], [1]),
                       helper.make_tensor("last_start", TensorProto.INT64, [1], [-1]),
                       helper.make_tensor("last_end", TensorProto.INT64, [1], [2 ** 62])]
        n = self.nodes
        n += [helper.make_node("ReduceSum", ["attention_mask", "axis1"], ["mask_sum"], keepdims=0),
              helper.make_node("Sub", ["mask_sum", "one"], ["seqlens_i64"]),
              helper.make_node("Cast", ["seqlens_i64"], ["seqlens_k"], to=TensorProto.INT32),
              helper.make_node("Shape", ["attention_mask"], ["mask_shape"]),
              helper.make_node("Gather", ["mask_shape", "index1"], ["total_i64"], axis=0),
              helper.make_node("Cast", ["total_i64"], ["total_sequence_length"], to=TensorProto.INT32)]
        inputs = [helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch_size", "sequence_length", h]),
                  helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"])]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", 1, vocab])]
        residual = "inputs_embeds"
        n.append(helper.make_node("SimplifiedLayerNormalization", [residual, self.norm_weight("model.layers.0.input_layernorm.weight", "ln_in.0")],
                                  ["normed.0"], axis=-1, epsilon=eps, stash_type=1))
        normed = "normed.0"
        for i in range(L):
            p = f"model.layers.{i}."
            past = [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
            present = [f"present.{i}.key", f"present.{i}.value"]
            inputs += [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch_size", kv, "past_sequence_length", d]) for x in past]
            outputs += [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch_size", kv, "total_sequence_length", d]) for x in present]
            qkv = self.linear(normed, [p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"], f"qkv.{i}")
            n.append(helper.make_node("GroupQueryAttention",
                                      [qkv, "", "", *past, "seqlens_k", "total_sequence_length", "cos_cache", "sin_cache"],
                                      [f"attn.{i}", *present], name=f"attn.{i}", domain="com.microsoft",
                                      num_heads=heads, kv_num_heads=kv, do_rotary=1, rotary_interleaved=0))
            o = self.linear(f"attn.{i}", [p + "self_attn.o_proj.weight"], f"o.{i}")
            n.append(helper.make_node("SkipSimplifiedLayerNormalization",
                                      [o, residual, self.norm_weight(p + "post_attention_layernorm.weight", f"ln_post.{i}")],
                                      [f"mlp_in.{i}", "", "", f"residual_mid.{i}"], domain="com.microsoft", epsilon=eps))
            gate = self.linear(f"mlp_in.{i}", [p + "mlp.gate_proj.weight"], f"gate.{i}")
            up = self.linear(f"mlp_in.{i}", [p + "mlp.up_proj.weight"], f"up.{i}")
            n += [helper.make_node("Sigmoid", [gate], [f"gate_sig.{i}"]),
                  helper.make_node("Mul", [gate, f"gate_sig.{i}"], [f"silu.{i}"]),
                  helper.make_node("Mul", [f"silu.{i}", up], [f"act.{i}"])]
            down = self.linear(f"act.{i}", [p + "mlp.down_proj.weight"], f"down.{i}")
            last = i == L - 1
            weight = "model.norm.weight" if last else f"model.layers.{i + 1}.input_layernorm.weight"
            n.append(helper.make_node("SkipSimplifiedLayerNormalization",
                                      [down, f"residual_mid.{i}", self.norm_weight(weight, "ln_final" if last else f"ln_in.{i + 1}")],
                                      ["final"] if last else [f"normed.{i + 1}", "", "", f"residual.{i + 1}"],
                                      domain="com.microsoft", epsilon=eps))
            residual, normed = f"residual.{i + 1}", f"normed.{i + 1}"
            log(f"  layer {i + 1}/{L}: peak RSS {peak_rss_mb():.0f} MB")
            gc.collect()
        n.append(helper.make_node("Slice", ["final", "last_start", "last_end", "axis1"], ["final_last"]))
        head = "lm_head.weight" if "lm_head.weight" in self.shards else "model.embed_tokens.weight"  # tied embeddings
        self.linear("final_last", [head], "logits")
        graph = helper.make_graph(n, "decoder", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)])
        model.ir_version = 8
        return model


def write_decoder(shards: Shards, cfg: dict, tmp: Path, precision: str) -> None:
    data = ExternalData(tmp / "decoder_model_merged.onnx_data")
    try:
        model = DecoderWriter(shards, cfg, data, precision).build()
    finally:
        data.close()
    onnx.save_model(model, str(tmp / "decoder_model_merged.onnx"))


def write_embedding(shards: Shards, cfg: dict, tmp: Path) -> None:
    """input_ids -> float32 rows of the fp16 table (Gather, then Cast)."""
    data = ExternalData(tmp / "embed_tokens.onnx_data")
    try:
        vocab, h = cfg["vocab_size"], cfg["hidden_size"]
        table = data.begin("embed_tokens.weight", TensorProto.FLOAT16, [vocab, h])
        for start in range(0, vocab, CHUNK_ROWS):
            data.write(shards.rows("model.embed_tokens.weight", start, min(vocab, start + CHUNK_ROWS)).astype(np.float16))
        table = data.end(table)
    finally:
        data.close()
    nodes = [helper.make_node("Gather", ["embed_tokens.weight", "input_ids"], ["rows"], axis=0),
             helper.make_node("Cast", ["rows"], ["inputs_embeds"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "embed_tokens",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])],
                              [helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch_size", "sequence_length", h])],
                              [table])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp / "embed_tokens.onnx"))


def write_vision(shards: Shards, cfg: dict, tower_dir: Path, tmp: Path, fp16: bool) -> dict:
    """Tower + Dense Connector + projector, exported without the LLM: preprocessing, layers, image size, tokens."""
    import torch

    from .convert import _gather, _graph_dir, _save_graph, fp16_graph
    from .modeling import connector_width_factor, dense_connector
    from .official import is_siglip_tower, load_tower

    siglip = is_siglip_tower(cfg)
    vision, layers, pre = load_tower(tower_dir, siglip)
    kind = cfg["mm_dense_connector_type"]
    width = vision.config.hidden_size * connector_width_factor(kind)
    if cfg["mm_hidden_size"] != width:
        raise ValueError(f"mm_hidden_size {cfg['mm_hidden_size']} does not match {kind} on a {vision.config.hidden_size}-wide tower")
    projector = torch.nn.Sequential(torch.nn.Linear(width, cfg["hidden_size"]), torch.nn.GELU(),
                                    torch.nn.Linear(cfg["hidden_size"], cfg["hidden_size"]))
    projector.load_state_dict({k: torch.from_numpy(shards.get(f"model.mm_projector.{k}")) for k in ("0.weight", "0.bias", "2.weight", "2.bias")})

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vision, self.projector = vision, projector

        def forward(self, pixel_values):
            out = self.vision(pixel_values=pixel_values, output_hidden_states=True)
            return self.projector(dense_connector(out.hidden_states, kind, layers))

    size = vision.config.image_size
    with torch.no_grad():
        encoder = Encoder().eval()
        px = torch.randn(1, 3, size, size)
        tokens = encoder(px).shape[1]
        torch.onnx.export(encoder, (px,), _graph_dir(tmp, "vision_encoder.onnx"), opset_version=OPSET,
                          input_names=["pixel_values"], output_names=["image_features"],
                          dynamic_axes={"pixel_values": {0: "num_images"}, "image_features": {0: "num_images"}})
    del encoder, vision, projector
    gc.collect()
    _gather(tmp, "vision_encoder.onnx")
    if fp16:
        path = tmp / "vision_encoder.onnx"
        _save_graph(fp16_graph(onnx.load(str(path))), path)
    return {**pre, "layers": asdict(layers), "kind": kind, "siglip": siglip, "imageSize": size, "tokens": tokens}


def convert(checkpoint: Path, tower: Path | None, out: Path, precision: str = "int4", kv_cache: str = "float32",
            name: str | None = None, version: str = "0.0.1", vision_precision: str | None = None) -> dict:
    """vision_precision: fp32 or fp16 for the vision encoder (default: fp16 with int4, fp32 with fp32)."""
    from .convert import PACK_FORMAT_VERSION
    from .official import pack_preprocess, prompt_config, read_config, resolve_tower, tokenizer_files

    t0 = time.monotonic()
    cfg = read_config(checkpoint)
    tower_dir = resolve_tower(checkpoint, cfg, tower)
    shards = Shards(checkpoint)
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", heads)
    with staging(out) as tmp:
        tokenizer_files(checkpoint, tmp)
        prompt = prompt_config(checkpoint, tmp, cfg, None)
        log(f"[1/4] vision encoder ({tower_dir.name}), peak RSS so far {peak_rss_mb():.0f} MB")
        v = write_vision(shards, cfg, tower_dir, tmp, fp16=(vision_precision or ("fp32" if precision == "fp32" else "fp16")) == "fp16")
        log(f"[2/4] token embedding, peak RSS {peak_rss_mb():.0f} MB")
        write_embedding(shards, cfg, tmp)
        log(f"[3/4] decoder: {cfg['num_hidden_layers']} layers, {precision} weights, streamed; peak RSS {peak_rss_mb():.0f} MB")
        write_decoder(shards, cfg, tmp, precision)
        manifest = {
            "format": "loupe-model-pack", "formatVersion": PACK_FORMAT_VERSION,
            "name": name or checkpoint.name, "version": version, "license": cfg.get("license", "see the checkpoint"),
            "description": f"{checkpoint.name}, converted tensor by tensor (loupe_dc.stream_convert)", "domain": None,
            "precision": precision,
            "vision": {"tower": "siglip" if v["siglip"] else "clip", "imageSize": v["imageSize"],
                       "mean": v["mean"], "std": v["std"], "padColor": v["padColor"], "resample": v["resample"],
                       "preprocess": pack_preprocess(v), "connector": v["kind"], "connectorLayers": v["layers"],
                       "tokensPerImage": v["tokens"], "tokensPerFrame": v["tokens"] // 2, "temporalPooling": "max2"},
            "decoder": {"hiddenSize": h, "numLayers": cfg["num_hidden_layers"], "numKeyValueHeads": kv, "headDim": h // heads,
                        "vocabSize": cfg["vocab_size"], "contextLength": cfg.get("max_position_embeddings", 4096),
                        "usesPositionIds": False},
            "prompt": prompt,
            "defaults": {"frames": 8, "maxNewTokens": 64},
        }
        manifest["files"] = file_table(tmp)
        publish(tmp, out, manifest)
    if kv_cache == "int8":
        from .kv_quant import quantize_pack

        log("[4/4] int8 KV cache (calibration)")
        quantize_pack(out, out.with_name(out.name + ".kv8"))
        import shutil

        shutil.rmtree(out)
        out.with_name(out.name + ".kv8").rename(out)
    seconds = time.monotonic() - t0
    log(f"done in {seconds:.0f} s, peak RSS {peak_rss_mb():.0f} MB")
    return {"convert_s": round(seconds, 1), "convert_peak_rss_mb": round(peak_rss_mb())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--vision-tower", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--precision", choices=("int4", "fp32"), default="int4")
    ap.add_argument("--kv-cache", choices=("float32", "int8"), default="float32")
    ap.add_argument("--vision-precision", choices=("fp32", "fp16"), help="the vision encoder's (default: fp16 with int4)")
    ap.add_argument("--name")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    print(json.dumps(convert(args.checkpoint, args.vision_tower, args.out, args.precision, args.kv_cache, args.name,
                             vision_precision=args.vision_precision)))


if __name__ == "__main__":
    main()
