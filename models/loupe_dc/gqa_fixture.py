"""A tiny random decoder graph whose attention is onnxruntime's GroupQueryAttention (com.microsoft), laid out as
onnxruntime-genai's model builder lays out its decoders: `inputs_embeds`, `attention_mask` and
`past_key_values.{i}.key/value` in; `logits` and `present.{i}.key/value` out; `seqlens_k` and
`total_sequence_length` derived from the mask; rotary embeddings inside the attention op.

It exists for the engine's tests: the native KV cache binds one buffer as both past and present for such graphs
(GQA then appends in place), and this graph lets CI check that against the plain path without real weights.

    python -m loupe_dc.gqa_fixture --out decoder.onnx [--layers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 64
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 16
VOCAB = 96
MAX_POSITIONS = 4096


def build(layers: int, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def weight(name: str, *shape: int, scale: float = 0.2) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    # rotary caches: (max positions, head_dim / 2)
    inv = 1.0 / (10000 ** (np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM))
    angles = np.outer(np.arange(MAX_POSITIONS, dtype=np.float64), inv)
    const("cos_cache", np.cos(angles).astype(np.float32))
    const("sin_cache", np.sin(angles).astype(np.float32))
    const("axis1", np.array([1], dtype=np.int64))
    const("one", np.array(1, dtype=np.int64))
    const("index1", np.array(1, dtype=np.int64))

    # seqlens_k = sum(mask) - 1 (int32, per batch); total_sequence_length = mask length (int32 scalar)
    nodes += [
        helper.make_node("ReduceSum", ["attention_mask", "axis1"], ["mask_sum"], keepdims=0),
        helper.make_node("Sub", ["mask_sum", "one"], ["seqlens_i64"]),
        helper.make_node("Cast", ["seqlens_i64"], ["seqlens_k"], to=TensorProto.INT32),
        helper.make_node("Shape", ["attention_mask"], ["mask_shape"]),
        helper.make_node("Gather", ["mask_shape", "index1"], ["total_i64"], axis=0),
        helper.make_node("Cast", ["total_i64"], ["total_sequence_length"], to=TensorProto.INT32),
    ]
    inputs = [
        helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, [1, "sequence", HIDDEN]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "total"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "sequence", VOCAB])]
    x = "inputs_embeds"
    for i in range(layers):
        past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        present_k, present_v = f"present.{i}.key", f"present.{i}.value"
        for name in (past_k, past_v):
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, KV_HEADS, "past", HEAD_DIM]))
        for name in (present_k, present_v):
            outputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, KV_HEADS, "present", HEAD_DIM])
            )
        q = weight(f"wq{i}", HIDDEN, HEADS * HEAD_DIM)
        k = weight(f"wk{i}", HIDDEN, KV_HEADS * HEAD_DIM)
        v = weight(f"wv{i}", HIDDEN, KV_HEADS * HEAD_DIM)
        o = weight(f"wo{i}", HEADS * HEAD_DIM, HIDDEN)
        nodes += [
            helper.make_node("MatMul", [x, q], [f"q{i}"]),
            helper.make_node("MatMul", [x, k], [f"k{i}"]),
            helper.make_node("MatMul", [x, v], [f"v{i}"]),
            helper.make_node(
                "GroupQueryAttention",
                [f"q{i}", f"k{i}", f"v{i}", past_k, past_v, "seqlens_k", "total_sequence_length", "cos_cache", "sin_cache"],
                [f"attn{i}", present_k, present_v],
                domain="com.microsoft",
                num_heads=HEADS,
                kv_num_heads=KV_HEADS,
                do_rotary=1,
            ),
            helper.make_node("MatMul", [f"attn{i}", o], [f"proj{i}"]),
            helper.make_node("Add", [x, f"proj{i}"], [f"h{i}"]),
        ]
        x = f"h{i}"
    nodes.append(helper.make_node("MatMul", [x, weight("lm_head", HIDDEN, VOCAB)], ["logits"]))
    graph = helper.make_graph(nodes, "gqa_fixture", inputs, outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = build(args.layers, args.seed)
    onnx.checker.check_model(model)
    tmp = f"{args.out}.{os.getpid()}.tmp"
    onnx.save(model, tmp)
    os.replace(tmp, args.out)
    shape = {
        "hiddenSize": HIDDEN,
        "numLayers": args.layers,
        "numKeyValueHeads": KV_HEADS,
        "headDim": HEAD_DIM,
        "vocabSize": VOCAB,
        "usesPositionIds": False,
    }
    print(json.dumps(shape))


if __name__ == "__main__":
    main()
