"""Tiny, randomly initialized Dense Connector checkpoints in the official release layout, for tests.

    python -m loupe_dc.tiny --out DIR --tower siglip|clip --connector dci|sci|sti [--llm vicuna|llama3]
    python -m loupe_dc.tiny fixtures --out DIR      # the test matrix, built and converted to packs

The architectures are the real ones (transformers' SiglipModel / CLIPModel saved as the Hub towers are,
27-layer SigLIP and 24-layer CLIP so the reference's layer indices apply, LlamaForCausalLM), only tiny:
hidden size 32 in the tower, 84 px images (36 patches: STI's runs of 8 leave a remainder), a 2-layer LLM.
Tokenizers are trained on the fly: a Llama-2-like one (SentencePiece-style BPE, byte fallback, <s> </s>)
for vicuna_v1 checkpoints and a Llama-3-like byte-level BPE with its header and <|eot_id|> tokens.
The checkpoint's config.json names the Hub tower (google/siglip-so400m-patch14-384 or
openai/clip-vit-large-patch14-336), so conversion needs --vision-tower, as with the released models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

TOWERS = {"siglip": "google/siglip-so400m-patch14-384", "clip": "openai/clip-vit-large-patch14-336"}
IMAGE_SIZE, PATCH = 84, 14

CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "You are a helpful language and vision assistant.",
    "You are able to understand the visual content that the user provides, and assist the user with a variety of tasks using natural language.",
    "USER: ASSISTANT: What is in the image? Describe the video. How many shapes are there? What happens after the circle appears?",
    "The image shows a red circle, a blue square and a green triangle on a gray background.",
    "There are three people walking in the park, and a dog runs after a ball.",
    "Is there a cat? Yes, there is a cat sitting on the sofa next to a window.",
    "What color is the car? The car is red. What is the man doing? He is cooking dinner in the kitchen.",
]

# (name, tower, connector, llm, precisions) of the test matrix
FIXTURES = [
    ("siglip-dci-vicuna", "siglip", "dci", "vicuna", ("fp32", "fp16", "int4")),
    ("siglip-sci-llama3", "siglip", "sci", "llama3", ("fp32",)),
    ("siglip-sti-vicuna", "siglip", "sti", "vicuna", ("fp32",)),
    ("clip-dci-llama3", "clip", "dci", "llama3", ("fp32",)),
    ("clip-sci-vicuna", "clip", "sci", "vicuna", ("fp32",)),
    ("clip-sti-llama3", "clip", "sti", "llama3", ("fp32",)),
]


def _llama2_tokenizer(out: Path) -> int:
    """SentencePiece-style BPE as Llama-2's tokenizer.json: ▁ for spaces, byte fallback <0x..>, <s> prepended."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    spec = json.loads(tok.to_str())
    trained = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):  # Llama's byte tokens sit right after the specials
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in trained:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    spec["model"]["vocab"] = vocab
    spec["added_tokens"] = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for c, i in (("<unk>", 0), ("<s>", 1), ("</s>", 2))]
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": None, "add_bos_token": True, "add_eos_token": False, "legacy": False, "model_max_length": 4096,
        "padding_side": "right", "clean_up_tokenization_spaces": False}, indent=2))
    return tok.get_vocab_size()


LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_2|>", "<|eot_id|>"]


def _llama3_tokenizer(out: Path) -> int:
    """Byte-level BPE as Llama-3's: special tokens after the vocabulary, <|begin_of_text|> prepended."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIALS])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False),
                                              processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                                                            special_tokens=[("<|begin_of_text|>", bos)])])
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
        "model_max_length": 8192, "clean_up_tokenization_spaces": True}, indent=2))
    return tok.get_vocab_size()


def _tower(kind: str, out: Path) -> tuple[int, int]:
    """A whole SigLIP / CLIP model (text side too) saved as the Hub repositories are; returns (hidden, layers)."""
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    text = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16)
    if kind == "siglip":
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=27, num_attention_heads=2, image_size=IMAGE_SIZE,
                      patch_size=PATCH, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        pre = {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
               "image_processor_type": "SiglipImageProcessor", "processor_class": "SiglipProcessor", "resample": 3,
               "rescale_factor": 1 / 255, "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}}
    else:
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=24, num_attention_heads=2, image_size=IMAGE_SIZE,
                      patch_size=PATCH, hidden_act="quick_gelu", projection_dim=32)
        model = CLIPModel(CLIPConfig(text_config={**text, "hidden_act": "quick_gelu"}, vision_config=vision, projection_dim=32))
        pre = {"crop_size": IMAGE_SIZE, "do_center_crop": True, "do_normalize": True, "do_resize": True,
               "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
               "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": IMAGE_SIZE}
    model.save_pretrained(out, safe_serialization=True)
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return vision["hidden_size"], vision["num_hidden_layers"]


def build(out: Path, tower: str, connector: str, llm: str, seed: int = 0) -> tuple[Path, Path]:
    """Writes out/checkpoint (the release layout) and out/tower; returns both paths."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from .modeling import connector_width_factor

    torch.manual_seed(seed)
    ckpt, tower_dir = out / "checkpoint", out / "tower"
    ckpt.mkdir(parents=True, exist_ok=True)
    tower_dir.mkdir(parents=True, exist_ok=True)
    vision_hidden, _ = _tower(tower, tower_dir)
    vocab = _llama2_tokenizer(ckpt) if llm == "vicuna" else _llama3_tokenizer(ckpt)
    ids = json.loads((ckpt / "tokenizer.json").read_text())
    special = {t["content"]: t["id"] for t in ids["added_tokens"]}
    bos, eos = (special["<s>"], special["</s>"]) if llm == "vicuna" else (special["<|begin_of_text|>"], special["<|end_of_text|>"])
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2 if llm == "llama3" else 4, max_position_embeddings=4096 if llm == "vicuna" else 8192,
                      rope_theta=10000.0 if llm == "vicuna" else 500000.0, rms_norm_eps=1e-5 if llm == "llama3" else 1e-6,
                      bos_token_id=bos, eos_token_id=eos, pad_token_id=0 if llm == "vicuna" else None, tie_word_embeddings=False,
                      initializer_range=0.2)
    model = LlamaForCausalLM(cfg)
    width = vision_hidden * connector_width_factor(connector)
    projector = torch.nn.Sequential(torch.nn.Linear(width, 64), torch.nn.GELU(), torch.nn.Linear(64, 64))
    state = {k: v.half().contiguous() for k, v in model.state_dict().items() if "rotary" not in k}
    state.update({f"model.mm_projector.{k}": v.half().contiguous() for k, v in projector.state_dict().items()})
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for fname, ks in shards.items():
        save_file({k: state[k] for k in ks}, str(ckpt / fname), metadata={"format": "pt"})
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({
        "metadata": {"total_size": sum(v.numel() * 2 for v in state.values())},
        "weight_map": {k: f for f, ks in shards.items() for k in ks}}, indent=2))
    c = cfg.to_dict()
    c.update(architectures=["LlavaLlamaForCausalLM"], model_type="llava_llama", torch_dtype="float16",
             mm_vision_tower=TOWERS[tower], mm_dense_connector_type=connector, mm_hidden_size=width,
             mm_projector_type="mlp2x_gelu", mm_vision_select_layer=-2, mm_vision_select_feature="patch",
             image_aspect_ratio="pad", mm_use_im_start_end=False, mm_use_im_patch_token=False, tune_mm_mlp_adapter=False,
             mm_projector_lr=None, freeze_mm_mlp_adapter=False, tokenizer_padding_side="right", use_cache=True)
    (ckpt / "config.json").write_text(json.dumps(c, indent=2))
    return ckpt, tower_dir


def fixtures(root: Path) -> None:
    from .convert import export_pack
    from .official import load_official

    for name, tower, connector, llm, precisions in FIXTURES:
        ckpt, tower_dir = build(root / name, tower, connector, llm)
        for precision in precisions:
            model, cfg, pre = load_official(ckpt, tower_dir)
            print(f"== {name} {precision}", file=sys.stderr)
            export_pack(model, cfg, ckpt, root / name / f"pack-{precision}", f"tiny-{name}", "0.0.1", "MIT",
                        "tiny random model (tests)", None, precision=precision, official={"pre": pre, "conv_mode": None},
                        release_weights=True)
    (root / "fixtures.json").write_text(json.dumps([
        {"name": n, "tower": t, "connector": c, "llm": l, "convMode": "vicuna_v1" if l == "vicuna" else "llama_3",
         "precisions": list(p)} for n, t, c, l, p in FIXTURES], indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=("model", "fixtures"), default="model")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tower", choices=tuple(TOWERS), default="siglip")
    ap.add_argument("--connector", choices=("dci", "sci", "sti"), default="dci")
    ap.add_argument("--llm", choices=("vicuna", "llama3"), default="vicuna")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "fixtures":
        fixtures(args.out)
    else:
        ckpt, tower = build(args.out, args.tower, args.connector, args.llm)
        print(f"checkpoint: {ckpt}\nvision tower: {tower}")


if __name__ == "__main__":
    main()
