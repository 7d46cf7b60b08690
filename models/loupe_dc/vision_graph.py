"""The vision encoder (tower -> Dense Connector -> projector) written node by node, its weights streamed.

Exporting the tower through PyTorch holds it in fp32 several times over (8.6 GB of peak memory for SigLIP
so400m's 400M parameters); writing the graph by hand, as the decoder is, holds one weight matrix at a time.

    pixel_values (N, 3, S, S)
      -> patch Conv, (CLIP: class token, pre-LayerNorm), + positions      hidden_states[0]
      -> per layer: LayerNorm, q/k/v Linear, MultiHeadAttention, out Linear, + residual,
                    LayerNorm, fc1, GELU (SigLIP: tanh; CLIP: quick), fc2, + residual     hidden_states[i]
      -> Dense Connector on hidden_states (dci / sci / sti / none), as modeling.dense_connector
      -> projector: Linear, GELU, Linear                                   image_features (N, tokens, hidden)

Only the layers the connector reads are written (SigLIP: the reference drops the last one; CLIP: the
penultimate is the deepest it reads). Linear layers are fp32 MatMuls, or MatMulNBits at 8 or 4 bits (block 32;
PRECISIONS says which accuracy level, and why). The checks on the tower (its kind, layer count, preprocessing)
are official.tower_spec's, shared with the PyTorch path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .modeling import ConnectorLayers, connector_width_factor
from .streamio import ACCURACY_LEVEL, BLOCK, ExternalData, Shards, quantize_rows

OPSET = 17
# precision -> (bits, MatMulNBits accuracy level). Measured on SigLIP so400m, 2 AVX2 cores (docs/real-models.md):
# int8 at accuracy level 1 (blocks dequantized to fp32 in the kernel) is as fast as level 4 (int8 dot products)
# and closer to fp32; 4 bits moves the features too far (cosine 0.96); int8 weights with per-call int8
# activations (DynamicQuantizeMatMul) were faster but further still (cosine 0.89).
PRECISIONS = {"fp32": (0, 0), "int8": (8, 1), "int4": (4, ACCURACY_LEVEL)}


@dataclass
class Tower:
    """What the graph needs to know of a tower (from its config.json)."""

    siglip: bool
    hidden: int
    heads: int
    image_size: int
    patch: int
    eps: float
    layers: int  # the layers the reference runs (SigLIP: one fewer than the checkpoint has)


def connector_indices(kind: str, layers: ConnectorLayers, count: int) -> list[int]:
    """hidden_states indices the connector reads, of count + 1 (embeddings, then each layer)."""
    select = layers.select_layer % (count + 1)
    if kind == "dci":
        return [select, *[i for a, b in layers.dci_groups for i in range(a, b)]]
    if kind in ("sci", "sti"):
        return [select, *layers.mid_layers]
    return [select]


class VisionWriter:
    def __init__(self, tower_shards: Shards, ckpt_shards: Shards, data: ExternalData, precision: str):
        if precision not in PRECISIONS:
            raise ValueError(f"vision precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.tower, self.ckpt, self.data = tower_shards, ckpt_shards, data
        self.bits, self.accuracy = PRECISIONS[precision]
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        suffix = "embeddings.patch_embedding.weight"
        found = [k for k in tower_shards.tensors if k.endswith(suffix) and "text" not in k]
        if not found:
            raise ValueError(f"the vision tower's weights have no {suffix}")
        self.prefix = found[0][: -len(suffix)]  # "vision_model." in a whole SigLIP / CLIP model

    def weight(self, shards: Shards, name: str, key: str, transpose: bool = False) -> str:
        a = shards.get(name)
        self.inits.append(self.data.tensor(key, np.ascontiguousarray(a.T if transpose else a)))
        return key

    def const(self, key: str, values: list, dtype=TensorProto.INT64) -> str:
        self.inits.append(helper.make_tensor(key, dtype, [len(values)], values))
        return key

    def linear(self, shards: Shards, x: str, name: str, out: str) -> str:
        """x @ W.T + b for the torch-layout Linear `name` (weight (N, K), bias (N,))."""
        n, k = shards.shape(name + ".weight")
        y = out + ".nobias"
        if not self.bits:
            w = self.weight(shards, name + ".weight", out + ".weight", transpose=True)
            self.nodes.append(helper.make_node("MatMul", [x, w], [y], name=out))
        else:
            packed, scales = quantize_rows(shards.get(name + ".weight"), self.bits)
            self.inits += [self.data.tensor(out + ".qweight", packed), self.data.tensor(out + ".scales", scales.reshape(-1))]
            self.nodes.append(helper.make_node("MatMulNBits", [x, out + ".qweight", out + ".scales"], [y], name=out,
                                               domain="com.microsoft", K=k, N=n, bits=self.bits, block_size=BLOCK,
                                               accuracy_level=self.accuracy))
        self.nodes.append(helper.make_node("Add", [y, self.weight(shards, name + ".bias", out + ".bias")], [out]))
        return out

    def layer_norm(self, x: str, name: str, out: str, eps: float) -> str:
        s = self.tower
        self.nodes.append(helper.make_node("LayerNormalization", [x, self.weight(s, name + ".weight", out + ".gamma"),
                                                                  self.weight(s, name + ".bias", out + ".beta")],
                                           [out], axis=-1, epsilon=eps))
        return out

    def embeddings(self, t: Tower) -> str:
        s, p, n = self.tower, self.prefix + "embeddings.", self.nodes
        conv = [self.weight(s, p + "patch_embedding.weight", "patch.weight")]
        if p + "patch_embedding.bias" in s:
            conv.append(self.weight(s, p + "patch_embedding.bias", "patch.bias"))
        n += [helper.make_node("Conv", ["pixel_values", *conv], ["patch.grid"], kernel_shape=[t.patch, t.patch],
                               strides=[t.patch, t.patch]),
              helper.make_node("Reshape", ["patch.grid", self.const("patch.flat", [0, t.hidden, -1])], ["patch.cols"]),
              helper.make_node("Transpose", ["patch.cols"], ["patch.tokens"], perm=[0, 2, 1])]
        x = "patch.tokens"
        if not t.siglip:  # CLIP: the class token leads, expanded over the batch
            cls = self.data.tensor("class.token", s.get(p + "class_embedding").reshape(1, 1, t.hidden))
            self.inits.append(cls)
            n += [helper.make_node("Shape", ["pixel_values"], ["batch"], start=0, end=1),
                  helper.make_node("Concat", ["batch", self.const("class.rest", [1, t.hidden])], ["class.shape"], axis=0),
                  helper.make_node("Expand", ["class.token", "class.shape"], ["class.tokens"]),
                  helper.make_node("Concat", ["class.tokens", x], ["tokens"], axis=1)]
            x = "tokens"
        n.append(helper.make_node("Add", [x, self.weight(s, p + "position_embedding.weight", "positions")], ["embedded"]))
        if not t.siglip:
            return self.layer_norm("embedded", self.prefix + "pre_layrnorm", "hidden.0", t.eps)
        n.append(helper.make_node("Identity", ["embedded"], ["hidden.0"]))
        return "hidden.0"

    def layer(self, t: Tower, i: int, x: str) -> str:
        s, n = self.tower, self.nodes
        p = f"{self.prefix}encoder.layers.{i}."
        h = self.layer_norm(x, p + "layer_norm1", f"l{i}.ln1", t.eps)
        out_proj = "out_proj" if p + "self_attn.out_proj.weight" in s else "o_proj"
        q, k, v = (self.linear(s, h, p + f"self_attn.{w}_proj", f"l{i}.{w}") for w in "qkv")
        n.append(helper.make_node("MultiHeadAttention", [q, k, v], [f"l{i}.attn"], domain="com.microsoft",
                                  num_heads=t.heads))
        o = self.linear(s, f"l{i}.attn", p + f"self_attn.{out_proj}", f"l{i}.o")
        n.append(helper.make_node("Add", [x, o], [f"l{i}.mid"]))
        h = self.layer_norm(f"l{i}.mid", p + "layer_norm2", f"l{i}.ln2", t.eps)
        up = self.linear(s, h, p + "mlp.fc1", f"l{i}.fc1")
        if t.siglip:  # gelu_pytorch_tanh
            n.append(helper.make_node("FastGelu", [up], [f"l{i}.act"], domain="com.microsoft"))
        else:  # quick_gelu: x * sigmoid(1.702 x)
            n += [helper.make_node("Mul", [up, "quick_gelu.k"], [f"l{i}.scaled"]),
                  helper.make_node("Sigmoid", [f"l{i}.scaled"], [f"l{i}.gate"]),
                  helper.make_node("Mul", [up, f"l{i}.gate"], [f"l{i}.act"])]
        down = self.linear(s, f"l{i}.act", p + "mlp.fc2", f"l{i}.fc2")
        n.append(helper.make_node("Add", [f"l{i}.mid", down], [f"hidden.{i + 1}"]))
        return f"hidden.{i + 1}"

    def tokens(self, i: int, drop_cls: bool) -> str:
        """hidden.{i}, without its class token where the connector drops it."""
        if not drop_cls:
            return f"hidden.{i}"
        out = f"hidden.{i}.patches"
        if not any(out in node.output for node in self.nodes):
            self.nodes.append(helper.make_node("Slice", [f"hidden.{i}", self.const(f"{out}.start", [1]),
                                                         self.const(f"{out}.end", [2 ** 62]), self.const(f"{out}.axis", [1])], [out]))
        return out

    def accumulate(self, i: int, kind: str, layers: ConnectorLayers) -> None:
        """DCI: adds hidden.{i} into its group's running sum as soon as it exists, so that each layer's output is
        freed after the next layer and this Add (a Sum at the end would keep every one alive: 0.7 GB for 8
        frames of SigLIP so400m)."""
        if kind != "dci":
            return
        for g, (a, b) in enumerate(layers.dci_groups):
            if a <= i < b:
                x = self.tokens(i, layers.drop_cls)
                if i > a:
                    self.nodes.append(helper.make_node("Add", [f"group{g}.sum{i - 1}", x], [f"group{g}.sum{i}"]))
                else:
                    self.nodes.append(helper.make_node("Identity", [x], [f"group{g}.sum{i}"]))

    def connector(self, kind: str, layers: ConnectorLayers, count: int) -> str:
        """modeling.dense_connector on the hidden states hidden.0 .. hidden.{count} (DCI's sums made already)."""
        n = self.nodes

        def tokens(i: int) -> str:
            return self.tokens(i, layers.drop_cls)

        base = tokens(layers.select_layer % (count + 1))
        if kind == "none":
            return base
        if kind == "dci":
            parts = [base]
            for g, (a, b) in enumerate(layers.dci_groups):
                self.inits.append(helper.make_tensor(f"group{g}.scale", TensorProto.FLOAT, [], [1.0 / (b - a)]))
                n.append(helper.make_node("Mul", [f"group{g}.sum{b - 1}", f"group{g}.scale"], [f"group{g}"]))
                parts.append(f"group{g}")
            n.append(helper.make_node("Concat", parts, ["connected"], axis=-1))
            return "connected"
        mids = [tokens(j) for j in layers.mid_layers]
        if kind == "sci":
            n.append(helper.make_node("Concat", [base, *mids], ["connected"], axis=-1))
            return "connected"
        if kind == "sti":  # runs of k tokens averaged, the remainder dropped
            k = layers.sti_kernel
            pooled = []
            for j, m in enumerate(mids):
                n += [helper.make_node("Shape", [m], [f"sti{j}.shape"]),
                      helper.make_node("Gather", [f"sti{j}.shape", self.const(f"sti{j}.axis", [1])], [f"sti{j}.len"]),
                      helper.make_node("Div", [f"sti{j}.len", self.const(f"sti{j}.k", [k])], [f"sti{j}.runs"]),
                      helper.make_node("Mul", [f"sti{j}.runs", f"sti{j}.k"], [f"sti{j}.kept"]),
                      helper.make_node("Slice", [m, self.const(f"sti{j}.start", [0]), f"sti{j}.kept", f"sti{j}.axis"], [f"sti{j}.cut"]),
                      helper.make_node("Concat", [self.const(f"sti{j}.lead", [0]), f"sti{j}.runs", self.const(f"sti{j}.tail", [k, -1])],
                                       [f"sti{j}.grouped_shape"], axis=0),
                      helper.make_node("Reshape", [f"sti{j}.cut", f"sti{j}.grouped_shape"], [f"sti{j}.grouped"]),
                      helper.make_node("ReduceMean", [f"sti{j}.grouped"], [f"sti{j}"], axes=[2], keepdims=0)]
                pooled.append(f"sti{j}")
            n.append(helper.make_node("Concat", [base, *pooled], ["connected"], axis=1))
            return "connected"
        raise ValueError(f"unknown mm_dense_connector_type {kind!r}")

    def build(self, t: Tower, kind: str, layers: ConnectorLayers, hidden: int, log=lambda m: None) -> onnx.ModelProto:
        count = t.layers
        deepest = max(connector_indices(kind, layers, count))
        x = self.embeddings(t)
        self.accumulate(0, kind, layers)
        if not t.siglip:
            self.inits.append(helper.make_tensor("quick_gelu.k", TensorProto.FLOAT, [], [1.702]))
        for i in range(deepest):
            x = self.layer(t, i, x)
            self.accumulate(i + 1, kind, layers)
            log(f"  vision layer {i + 1}/{deepest}")
        features = self.connector(kind, layers, count)
        c, n = self.ckpt, self.nodes
        width = c.shape("model.mm_projector.0.weight")[1]
        if width != t.hidden * connector_width_factor(kind):
            raise ValueError(f"the projector takes {width} channels; {kind} on a {t.hidden}-wide tower makes "
                             f"{t.hidden * connector_width_factor(kind)}")
        self.linear(c, features, "model.mm_projector.0", "projector.0")
        n.append(helper.make_node("Gelu", ["projector.0"], ["projector.act"], domain="com.microsoft"))
        self.linear(c, "projector.act", "model.mm_projector.2", "image_features")
        side = t.image_size
        graph = helper.make_graph(
            n, "vision_encoder",
            [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["num_images", 3, side, side])],
            [helper.make_tensor_value_info("image_features", TensorProto.FLOAT, ["num_images", "tokens", hidden])],
            self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)])
        model.ir_version = 8
        return model


def write_vision_graph(tower_dir: Path, ckpt_shards: Shards, tower: Tower, kind: str, layers: ConnectorLayers,
                       hidden: int, out: Path, precision: str, log=lambda m: None) -> int:
    """Writes out (vision_encoder.onnx) and its external data; returns the image tokens per picture."""
    data = ExternalData(out.with_name(out.name + "_data"))
    try:
        model = VisionWriter(Shards(tower_dir), ckpt_shards, data, precision).build(tower, kind, layers, hidden, log)
    finally:
        data.close()
    onnx.save_model(model, str(out))
    patches = (tower.image_size // tower.patch) ** 2 + (0 if tower.siglip else 1) - (1 if layers.drop_cls else 0)
    if kind == "sti":
        return patches + 2 * (patches // layers.sti_kernel)
    return patches


def _run(graph: Path, frames: int, threads: int, out: Path) -> None:
    """One precision in its own process: load, then encode `frames` pictures one at a time (the first warms up)."""
    import json
    import time

    import onnxruntime as ort

    from .streamio import peak_rss_mb

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    t0 = time.perf_counter()
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    side = session.get_inputs()[0].shape[2]
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    times, features = [], []
    for f in range(frames + 1):  # a smooth picture per frame (what video frames look like, not noise)
        px = np.stack([np.sin(6 * x + f), np.cos(5 * y - f), np.sin(4 * (x + y) + 2 * f)])[None].astype(np.float32)
        t = time.perf_counter()
        features.append(session.run(None, {"pixel_values": px})[0])
        times.append(time.perf_counter() - t)
    np.save(out.with_suffix(".npy"), np.concatenate(features[1:]))
    out.write_text(json.dumps({"load_s": load_s, "ms_per_frame": 1000 * float(np.median(times[1:])),
                               "peak_rss_mb": peak_rss_mb(), "onnxruntime": ort.__version__}))


def measure(checkpoint: Path, tower_dir: Path, out: Path, precisions: list[str], frames: int, threads: int) -> dict:
    """Writes the vision encoder at each precision and measures each in its own process: time per frame, peak
    memory, file size, and how far its features are from fp32's (the largest error relative to fp32's largest
    feature, and the smallest cosine similarity of a token)."""
    from .apart import run_apart
    from .official import read_config
    from .stream_convert import write_vision

    cfg, shards = read_config(checkpoint), Shards(checkpoint)
    rows = {}
    for p in precisions:
        folder = out / p
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "vision_encoder.onnx").exists():
            write_vision(shards, cfg, tower_dir, folder, p)
        rows[p] = run_apart("loupe_dc.vision_graph", folder / "vision_encoder.onnx", folder / "measured.json",
                            frames=frames, threads=threads)
    ref = np.load(out / "fp32" / "measured.npy") if "fp32" in rows else None
    for p in rows:
        if ref is not None:
            got = np.load(out / p / "measured.npy")
            cos = (got * ref).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(ref, axis=-1))
            rows[p].update(max_error_vs_fp32=float(np.abs(got - ref).max() / np.abs(ref).max()), min_cosine_vs_fp32=float(cos.min()))
    return rows


def main() -> None:
    import argparse
    import json

    from .apart import add_worker_flags

    ap = argparse.ArgumentParser(description="Measure the vision encoder's precisions: "
                                 "python -m loupe_dc.vision_graph --checkpoint DIR --vision-tower DIR --out DIR")
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--vision-tower", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--precisions", default="fp32,int8,int4")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    add_worker_flags(ap)
    args = ap.parse_args()
    if args.run:
        _run(args.run, args.frames, args.threads, args.result)
        return
    print(json.dumps(measure(args.checkpoint, args.vision_tower, args.out, args.precisions.split(","), args.frames,
                             args.threads), indent=2))


if __name__ == "__main__":
    main()
