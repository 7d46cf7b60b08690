"""The streaming converter (loupe_dc.stream_convert) against transformers in fp32, and what it costs in memory."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from loupe_dc import release_shapes, stream_convert, streamio, tiny
from loupe_dc.official import load_official

MODELS = Path(__file__).resolve().parent.parent


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_decoder(dec: ort.InferenceSession, manifest: dict, embeds: np.ndarray, past: dict | None, start: int):
    d = manifest["decoder"]
    n = embeds.shape[1]
    past = past or {f"past_key_values.{i}.{kv}": np.zeros((1, d["numKeyValueHeads"], 0, d["headDim"]), np.float32)
                    for i in range(d["numLayers"]) for kv in ("key", "value")}
    names = [o.name for o in dec.get_outputs()]
    out = dict(zip(names, dec.run(names, {"inputs_embeds": embeds, "attention_mask": np.ones((1, start + n), np.int64), **past})))
    present = {f"past_key_values.{i}.{kv}": out[f"present.{i}.{kv}"] for i in range(d["numLayers"]) for kv in ("key", "value")}
    return out["logits"][0, -1], present


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    ckpt, tower = tiny.build(root, "siglip", "dci", "llama3")  # grouped-query attention: 4 query, 2 key-value heads
    return root, ckpt, tower


def test_fp32_matches_transformers(tiny_checkpoint):
    root, ckpt, tower = tiny_checkpoint
    out = root / "pack-fp32"
    stream_convert.convert(ckpt, tower, out, precision="fp32")
    manifest = json.loads((out / "manifest.json").read_text())
    model, _, _ = load_official(ckpt, tower)
    rng = np.random.default_rng(0)

    # the vision encoder: tower, dense connector and projector
    size = manifest["vision"]["imageSize"]
    px = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    want = model.encode_images(torch.from_numpy(px)).detach().numpy()
    got = session(out / "vision_encoder.onnx").run(None, {"pixel_values": px})[0]
    assert np.abs(got - want).max() < 1e-4

    # the embedding table, and the decoder over a prefill then two steps, against the LLM's own logits
    ids = rng.integers(0, manifest["decoder"]["vocabSize"], 12)
    table = session(out / "embed_tokens.onnx").run(None, {"input_ids": ids[None].astype(np.int64)})[0]
    want_embeds = model.llm.get_input_embeddings()(torch.from_numpy(ids)[None]).detach().numpy()
    assert np.abs(table - want_embeds).max() < 1e-3  # the table is stored in fp16
    embeds = want_embeds.astype(np.float32)
    with torch.no_grad():
        reference = model.llm(inputs_embeds=torch.from_numpy(embeds)).logits[0].numpy()
    dec = session(out / "decoder_model_merged.onnx")
    logits, past = run_decoder(dec, manifest, embeds[:, :10], None, 0)
    assert np.abs(logits - reference[9]).max() < 1e-4
    for pos in (10, 11):
        logits, past = run_decoder(dec, manifest, embeds[:, pos:pos + 1], past, pos)
        assert np.abs(logits - reference[pos]).max() < 1e-4


@pytest.mark.parametrize("tower,connector", [("siglip", "sci"), ("clip", "dci"), ("clip", "sti")])
def test_vision_graph_matches_transformers(tmp_path, tower, connector):
    """The hand-written vision encoder (loupe_dc.vision_graph) for each tower kind and connector: CLIP's class
    token, pre-LayerNorm, quick GELU and dropped CLS; STI's pooled runs; SCI's layer choice."""
    ckpt, tower_dir = tiny.build(tmp_path, tower, connector, "vicuna")
    out = tmp_path / "pack"
    stream_convert.convert(ckpt, tower_dir, out, precision="fp32")
    manifest = json.loads((out / "manifest.json").read_text())
    model, _, _ = load_official(ckpt, tower_dir)
    size = manifest["vision"]["imageSize"]
    px = np.random.default_rng(2).standard_normal((2, 3, size, size)).astype(np.float32)
    want = model.encode_images(torch.from_numpy(px)).detach().numpy()
    got = session(out / "vision_encoder.onnx").run(None, {"pixel_values": px})[0]
    assert got.shape == want.shape and manifest["vision"]["tokensPerImage"] == want.shape[1]
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_rows_decode_to_the_weights(bits):
    """MatMulNBits' blocks as written: (q - zero point) * scale is within half a step of each weight (4 bits: one
    step, since onnxruntime maps a block's largest magnitude to -8 and the other side ends at +7)."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 96)).astype(np.float32) * 0.02
    w[3, :32] = 0  # an all-zero block keeps a usable scale
    packed, scales = streamio.quantize_rows(w, bits)
    if bits == 8:
        q = packed.astype(np.float32) - 128
    else:  # two 4-bit values per byte, low nibble first; the zero point is 8
        q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(64, -1, 32).astype(np.float32) - 8
    decoded = (q * scales[:, :, None]).reshape(64, -1)[:, :96]
    steps = np.abs(np.repeat(scales, 32, axis=1)[:, :96])
    assert np.all(np.abs(decoded - w) <= steps * (0.5 if bits == 8 else 1.0) + 1e-7)
    assert np.abs(decoded - w).max() > 0  # it really is quantized


def test_int4_is_what_onnxruntimes_own_quantizer_makes(tiny_checkpoint):
    """Quantized while streamed, the int4 decoder equals onnxruntime's MatMulNBits quantizer run on the fp32 graph
    (same block size, symmetry and accuracy level): the layout of weights and scales is the one ORT expects."""
    import onnx
    from onnxruntime.quantization.matmul_4bits_quantizer import MatMul4BitsQuantizer

    root, ckpt, tower = tiny_checkpoint
    packs = {p: root / f"pack-{p}" for p in ("fp32", "int4")}
    for p, out in packs.items():
        if not out.exists():
            stream_convert.convert(ckpt, tower, out, precision=p)
    reference = onnx.load(str(packs["fp32"] / "decoder_model_merged.onnx"))
    quantizer = MatMul4BitsQuantizer(reference, block_size=stream_convert.BLOCK, is_symmetric=True,
                                     accuracy_level=stream_convert.ACCURACY_LEVEL)
    quantizer.process()
    quantized = root / "ort-quantized.onnx"
    onnx.save(quantizer.model.model, str(quantized))
    manifest = json.loads((packs["int4"] / "manifest.json").read_text())
    ids = np.random.default_rng(1).integers(0, manifest["decoder"]["vocabSize"], 16)
    embeds = session(packs["int4"] / "embed_tokens.onnx").run(None, {"input_ids": ids[None].astype(np.int64)})[0]
    ours = run_decoder(session(packs["int4"] / "decoder_model_merged.onnx"), manifest, embeds, None, 0)[0]
    theirs = run_decoder(session(quantized), manifest, embeds, None, 0)[0]
    fp32 = run_decoder(session(packs["fp32"] / "decoder_model_merged.onnx"), manifest, embeds, None, 0)[0]
    assert np.abs(ours - theirs).max() < 1e-3 * np.abs(theirs).max()
    assert not np.allclose(ours, fp32, atol=1e-3)  # it really is quantized


def test_peak_memory_stays_below_the_fp32_model(tmp_path):
    """An LLM of 157M parameters (598 MB in fp32): converting it to int4 never holds it."""
    ckpt, tower = release_shapes.build(tmp_path, "test")
    args = ["--checkpoint", str(ckpt), "--vision-tower", str(tower), "--out", str(tmp_path / "pack")]
    done = subprocess.run([sys.executable, "-m", "loupe_dc.stream_convert", *args], cwd=MODELS, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    shape = release_shapes.SHAPES["test"]
    fp32_mb = sum(int(np.prod(s)) for _, s, _ in release_shapes.llm_tensors(shape)) * 4 / 2 ** 20
    assert fp32_mb > 500
    assert result["convert_peak_rss_mb"] < fp32_mb, (result, fp32_mb, [l for l in done.stderr.splitlines() if "RSS" in l])
    manifest = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    assert manifest["precision"] == "int4" and manifest["decoder"]["numKeyValueHeads"] == 4
