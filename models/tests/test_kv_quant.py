"""The int8 KV-cache rewrite (loupe_dc.kv_quant) on the GQA fixture graph: what it changes, and what it refuses."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from loupe_dc import gqa_fixture, kv_quant


def test_rewrites_cache_types_scales_and_attributes():
    model = gqa_fixture.build(layers=2, seed=0)
    nodes = kv_quant.attention_nodes(model)
    heads, dim = gqa_fixture.KV_HEADS, gqa_fixture.HEAD_DIM
    k = np.full((2, heads, 1, dim), 0.01, np.float32)
    kv_quant.quantize_graph(model, k, k * 2, "channel")
    onnx.checker.check_model(model)
    caches = [v for v in list(model.graph.input) + list(model.graph.output) if "key_values" in v.name or "present" in v.name]
    assert len(caches) == 8 and all(v.type.tensor_type.elem_type == TensorProto.INT8 for v in caches)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for i, node in enumerate(nodes):
        assert node.input[12] == f"kv_scale.{i}.key" and node.input[13] == f"kv_scale.{i}.value"
        assert inits[node.input[12]].shape == (heads, 1, dim)
        np.testing.assert_allclose(inits[node.input[13]], 0.02)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["k_quant_type"] == b"PER_CHANNEL" and attrs["kv_cache_bit_width"] == 8
    with pytest.raises(ValueError, match="quantized already"):
        kv_quant.quantize_graph(model, k, k, "channel")


def test_key_bound_holds_at_every_rotation():
    """A key pair's norm bounds each of its channels whatever angle rotary embedding turns it by."""
    model = gqa_fixture.build(layers=1, seed=0)
    partner = kv_quant.rotary_pairs(model, kv_quant.attention_nodes(model)[0], gqa_fixture.HEAD_DIM)
    half = gqa_fixture.HEAD_DIM // 2
    assert list(partner[:half]) == list(range(half, 2 * half)) and list(partner[half:]) == list(range(half))
    stats = kv_quant.Stats(1, 1, gqa_fixture.HEAD_DIM, [partner])
    key = np.zeros((1, 1, 1, gqa_fixture.HEAD_DIM), np.float32)
    key[..., 0], key[..., half] = 3.0, 4.0
    stats.add(0, key, key)
    k_scale, v_scale = stats.scales("channel", 1.0)
    assert k_scale[0, 0, 0, 0] * 127 == pytest.approx(5.0) and k_scale[0, 0, 0, half] * 127 == pytest.approx(5.0)
    assert v_scale[0, 0, 0, 0] * 127 == pytest.approx(3.0)  # values are not rotated: their own bound
    per_tensor, _ = stats.scales("tensor", 1.0)
    assert per_tensor.shape == (1, 1) and per_tensor[0, 0] * 127 == pytest.approx(5.0)


def test_refuses_a_graph_without_group_query_attention():
    model = gqa_fixture.build(layers=1, seed=0)
    for node in model.graph.node:
        if node.op_type == "GroupQueryAttention":
            node.op_type = "MultiHeadAttention"
    with pytest.raises(ValueError, match="no GroupQueryAttention"):
        kv_quant.attention_nodes(model)
