"""The hybrid vision tower (ImageNet EfficientNet-Lite0 stages + transformer layers) in the official checkpoint layout,
through the converter, and the training data's background-colour questions (python -m pytest models/tests)."""

import json
import random

import numpy as np
import pytest
import torch

from loupe_dc.convert import export_pack
from loupe_dc.modeling import BuiltinConfig, DenseConnectorMLLM, HybridVisionConfig, HybridVisionTower, lite0_weights_path, load_checkpoint
from loupe_dc.shapes import HONEST_ANSWER, SHAPES, ShapeSpec, make_sample, qa_for_set
from loupe_dc.text import PromptCodec, save_tokenizer, train_tokenizer
from loupe_dc.train import write_checkpoint


def test_lite0_stages_match_the_pretrained_weights():
    tower = HybridVisionTower(HybridVisionConfig())
    tower.load_lite0(lite0_weights_path())  # raises on a missing key; load_state_dict raises on any shape mismatch
    state = torch.load(str(lite0_weights_path()), map_location="cpu")
    assert torch.equal(tower._blocks[10]._project_conv.weight, state["_blocks.10._project_conv.weight"])
    assert tower.config.cnn_stride == 16
    out = tower(torch.zeros(2, 3, 128, 128))
    assert out.last_hidden_state.shape == (2, 64, 192)
    assert len(out.hidden_states) == 5  # embedding + 4 layers, as CLIPVisionModel reports them


@pytest.fixture(scope="module")
def hybrid_checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hybrid")
    tok = train_tokenizer([f"USER: What color is the {k}? ASSISTANT: red" for k in SHAPES] * 20, vocab_size=300)
    save_tokenizer(tok, tmp / "tok")
    codec = PromptCodec(tok)
    cfg = BuiltinConfig(tower="hybrid", image_size=64, vision_hidden=32, vision_layers=2, vision_heads=2, llm_hidden=48,
                        llm_layers=1, llm_heads=2, llm_kv_heads=1, llm_intermediate=64)
    torch.manual_seed(0)
    model = DenseConnectorMLLM.new_builtin(cfg, tok.get_vocab_size(), codec.bos, codec.eos, codec.pad)
    model.vision.load_lite0(lite0_weights_path())
    write_checkpoint(model, codec, cfg, tmp / "ckpt", 0.0, 0)
    return model, tmp / "ckpt"


def test_checkpoint_round_trip(hybrid_checkpoint):
    model, ckpt = hybrid_checkpoint
    assert json.loads((ckpt / "vision_tower" / "config.json").read_text())["model_type"] == "loupe_hybrid"
    loaded, cfg = load_checkpoint(ckpt)
    assert cfg["mm_dense_connector_layers"]["drop_cls"] is False
    px = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_images(px), model.eval().encode_images(px))


def test_converter_exports_the_hybrid_tower(hybrid_checkpoint, tmp_path):
    import onnxruntime as ort

    _, ckpt = hybrid_checkpoint
    model, cfg = load_checkpoint(ckpt)
    manifest = export_pack(model, cfg, ckpt, tmp_path / "pack", "t", "0.0.1", "MIT", "test", None)
    assert manifest["vision"]["tokensPerImage"] == 16 and manifest["vision"]["imageSize"] == 64
    px = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "pack" / "vision_encoder.onnx")).run(None, {"pixel_values": px})[0]
    with torch.no_grad():
        want = model.encode_images(torch.from_numpy(px)).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_background_colour_questions():
    cast = [ShapeSpec("circle", "yellow"), ShapeSpec("square", "red")]
    # share 0 (the evaluation's stream) asks exactly what it asked without backgrounds
    a, b = random.Random(5), random.Random(5)
    assert [qa_for_set(a, cast, ("blue",), 0.0) for _ in range(200)] == [qa_for_set(b, cast) for _ in range(200)]
    rng = random.Random(7)
    asked = [qa_for_set(rng, cast, ("blue",), 1.0) for _ in range(300)]
    about_blue = [(q, ans) for q, ans in asked if "blue" in q and ans != HONEST_ANSWER]  # not "Is there a blue rectangle?"
    assert about_blue and all(ans in ("no", "Nothing is blue.") for _, ans in about_blue)
    # the stills of a sample name their background only when it is close to a colour word, never a shape's colour
    rng = random.Random(3)
    for _ in range(15):
        s = make_sample(rng, None, 16, 0.5)
        colors = {spec.color for st in s.stills for spec in st.placed}
        assert all(st.background not in colors for st in s.stills if st.background)
