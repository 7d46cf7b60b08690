"""Released Dense Connector checkpoints (HuanjinYao/DenseConnector-v1.5-{7B,13B,8B}) -> model packs.

The official layout is LLaVA-1.5's: config.json (model_type llava_llama, mm_vision_tower,
mm_dense_connector_type, mm_vision_select_layer, mm_projector_type mlp2x_gelu, image_aspect_ratio),
the LLM and `model.mm_projector.*` in safetensors shards, tokenizer files, and a vision tower named by
`mm_vision_tower` (a Hub id such as google/siglip-so400m-patch14-384, downloaded separately).

What the reference does, and this loader repeats (dc/model/multimodal_encoder/*, dense_connector.py):
  * SigLIP (the tower's name contains "siglip"): the last encoder layer is deleted, features are read
    from hidden_states before the post-layernorm, no CLS token (729 tokens for so400m at 384 px),
    `mm_vision_select_layer` is ignored (hidden_states[-1] of the truncated tower), DCI groups average
    hidden_states [0:13) and [13:26), SCI/STI read hidden_states 7 and 15; the image processor is fixed:
    384 px, bicubic, mean = std = 0.5.
  * CLIP: hidden_states[mm_vision_select_layer] (-2) without the CLS token, groups [0:12) and [12:24),
    mid layers 7 and 15; the tower's own CLIPImageProcessor.
  * STI averages runs of 8 tokens along the flattened token axis, the remainder dropped (729 -> 91).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from .modeling import ConnectorLayers, DenseConnectorMLLM, connector_width_factor

SUPPORTED_CONNECTORS = ("sti", "sci", "dci")


class CheckpointError(ValueError):
    """The checkpoint cannot be converted; the message says what is missing or unsupported."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def is_official_release(checkpoint: Path) -> bool:
    """Released checkpoints carry no `mm_dense_connector_layers` (Loupe's own checkpoints do)."""
    try:
        cfg = json.loads((checkpoint / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return "mm_dense_connector_layers" not in cfg


def read_config(checkpoint: Path) -> dict:
    if not checkpoint.is_dir():
        raise CheckpointError(f"{checkpoint} is not a folder")
    path = checkpoint / "config.json"
    if not path.exists():
        raise CheckpointError(f"{checkpoint} is not a Dense Connector checkpoint: config.json is missing")
    try:
        cfg = json.loads(path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e
    aux = [k for k in cfg if "aux" in k and "vision" in k] + [k for k in ("image_size_aux", "optimize_vision_tower_aux") if k in cfg]
    if aux or str(cfg.get("model_type", "")).startswith(("mgm", "mini_gemini")):
        raise CheckpointError(
            f"{path}: a Mini-Gemini Dense Connector (second vision tower: {', '.join(sorted(set(aux))) or cfg.get('model_type')}) "
            "is not supported; use a LLaVA-1.5 Dense Connector checkpoint (DenseConnector-v1.5-7B/13B/8B)")
    missing = [k for k in ("mm_vision_tower", "mm_dense_connector_type", "mm_projector_type", "mm_hidden_size",
                           "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size") if k not in cfg]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: not a LLaVA-1.5 Dense Connector checkpoint")
    if cfg.get("model_type") not in ("llava_llama", "llava", "llama"):
        raise CheckpointError(f"{path}: model_type {cfg.get('model_type')!r} is not supported (expected llava_llama)")
    if cfg["mm_projector_type"] != "mlp2x_gelu":
        raise CheckpointError(f"{path}: mm_projector_type {cfg['mm_projector_type']!r} is not supported (expected mlp2x_gelu)")
    if cfg["mm_dense_connector_type"] not in SUPPORTED_CONNECTORS:
        raise CheckpointError(f"{path}: mm_dense_connector_type {cfg['mm_dense_connector_type']!r} is not one of {', '.join(SUPPORTED_CONNECTORS)}")
    aspect = cfg.get("image_aspect_ratio", "pad")
    if aspect not in ("pad", "square", None):
        raise CheckpointError(f"{path}: image_aspect_ratio {aspect!r} (AnyRes / high-resolution variants) is not supported; only 'pad'")
    if cfg.get("mm_use_im_start_end"):
        raise CheckpointError(f"{path}: mm_use_im_start_end=true (<im_start>/<im_end> tokens) is not supported")
    shards = sorted(checkpoint.glob("*.safetensors"))
    if not shards:
        bins = sorted(checkpoint.glob("*.bin"))
        hint = " (only PyTorch .bin shards: re-save as safetensors)" if bins else ""
        raise CheckpointError(f"{checkpoint} has no *.safetensors weight shards{hint}")
    index = checkpoint / "model.safetensors.index.json"
    if index.exists():
        wanted = set(json.loads(index.read_text())["weight_map"].values())
        absent = sorted(w for w in wanted if not (checkpoint / w).exists())
        if absent:
            raise CheckpointError(f"{checkpoint} is incomplete: {', '.join(absent)} listed in {index.name} but not present")
    if not (checkpoint / "tokenizer.json").exists() and not (checkpoint / "tokenizer.model").exists():
        raise CheckpointError(f"{checkpoint} has no tokenizer (tokenizer.json or tokenizer.model)")
    if not (checkpoint / "tokenizer_config.json").exists():
        raise CheckpointError(f"{checkpoint} has no tokenizer_config.json")
    return cfg


def resolve_tower(checkpoint: Path, cfg: dict, vision_tower: Path | None) -> Path:
    name = cfg["mm_vision_tower"]
    candidates = [vision_tower] if vision_tower else [Path(name), checkpoint / name]
    for c in candidates:
        if c is not None and (c / "config.json").exists():
            return c
    if vision_tower:
        raise CheckpointError(f"--vision-tower {vision_tower} has no config.json: download {name} there first")
    raise CheckpointError(f"the checkpoint's vision tower {name!r} is not a local folder: download it "
                          f"(huggingface-cli download {name} --local-dir DIR) and pass --vision-tower DIR")


# Pillow's filter codes (Image.Resampling) as transformers' preprocessor_config.json names them; NEAREST (0) is
# not reproduced by Loupe's resampler.
PIL_KERNELS = {3: "bicubic", 2: "bilinear", 1: "lanczos", 4: "box", 5: "hamming"}


def pack_preprocess(pre: dict) -> dict:
    """The manifest's vision.preprocess for a processor (docs/model-pack.md#preprocessing)."""
    resize = {"kernel": pre["resample"], "antialias": True}
    if pre["resample"] == "bicubic":
        resize["a"] = -0.5
    return {"pad": "expand2square", "resize": resize, "rescale": pre.get("rescale", 1 / 255)}


def is_siglip_tower(cfg: dict) -> bool:
    return "siglip" in str(cfg["mm_vision_tower"]).lower()  # the reference decides by the tower's name


def tower_spec(tower_dir: Path, siglip: bool) -> tuple[object, ConnectorLayers, dict]:
    """The tower's vision config (no weights), the connector's layer choice, and its preprocessing; the checks
    the reference's indices and processor need. `layers` is the count the reference runs (SigLIP: one fewer)."""
    from transformers import AutoConfig

    raw = AutoConfig.from_pretrained(tower_dir)
    vcfg = getattr(raw, "vision_config", raw)
    kind = getattr(vcfg, "model_type", "")
    if siglip != ("siglip" in kind):
        raise CheckpointError(f"the vision tower at {tower_dir} is a {kind!r} model, but the checkpoint names "
                              f"a {'SigLIP' if siglip else 'CLIP'} tower")
    n = vcfg.num_hidden_layers
    if siglip:
        if n < 27:
            raise CheckpointError(f"SigLIP tower at {tower_dir} has {n} layers; the reference indices need 27 (so400m)")
        layers = ConnectorLayers(-1, False, [[0, 13], [13, 26]], [7, 15])
        pre = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "resample": "bicubic", "rescale": 1 / 255}
        if vcfg.image_size != 384:
            log(f"note: SigLIP tower image size {vcfg.image_size} (the reference's processor is fixed at 384)")
    else:
        if n != 24:
            raise CheckpointError(f"CLIP tower at {tower_dir} has {n} layers; the reference indices are for 24 (ViT-L/14)")
        layers = ConnectorLayers(-2, True, [[0, 12], [12, 24]], [7, 15])
        p = tower_dir / "preprocessor_config.json"
        cfgp = json.loads(p.read_text()) if p.exists() else {}
        resample = cfgp.get("resample", 3)
        if resample not in PIL_KERNELS:
            raise CheckpointError(f"{p}: resample {resample!r} is not a Pillow filter Loupe reproduces "
                                  f"({', '.join(f'{k} ({v})' for k, v in PIL_KERNELS.items())})")
        side = vcfg.image_size
        sizes = {"size": cfgp.get("size"), "crop_size": cfgp.get("crop_size") if cfgp.get("do_center_crop") else None}
        for key, v in sizes.items():
            if v not in (None, side, {"shortest_edge": side}, {"height": side, "width": side}):
                raise CheckpointError(f"{p}: {key} {v!r} differs from the tower's image size {side} (Loupe resizes the "
                                      "padded square straight to the image size, which is what the processor does then)")
        pre = {"mean": cfgp.get("image_mean", [0.48145466, 0.4578275, 0.40821073]),
               "std": cfgp.get("image_std", [0.26862954, 0.26130258, 0.27577711]), "resample": PIL_KERNELS[resample],
               "rescale": cfgp.get("rescale_factor", 1 / 255) if cfgp.get("do_rescale", True) else 1.0}
    # expand2square pads with tuple(int(x * 255) for x in image_mean): truncated, not rounded
    pre["padColor"] = [int(m * 255) for m in pre["mean"]]
    return vcfg, layers, pre


def load_tower(tower_dir: Path, siglip: bool) -> tuple[torch.nn.Module, ConnectorLayers, dict]:
    """The tower as the reference runs it, the connector's layer choice, and its preprocessing."""
    from transformers import CLIPVisionModel, SiglipVisionModel

    _, layers, pre = tower_spec(tower_dir, siglip)
    if siglip:
        vision = SiglipVisionModel.from_pretrained(tower_dir, torch_dtype=torch.float32, attn_implementation="eager")
        del vision.vision_model.encoder.layers[-1:]  # the reference deletes the last layer
        vision.config.num_hidden_layers -= 1
        vision.vision_model.use_head = False
        vision.vision_model.head = torch.nn.Identity()
        vision.vision_model.embeddings.patch_embedding.padding = (0, 0)  # "valid", spelled so torch 1.13 exports it
    else:
        vision = CLIPVisionModel.from_pretrained(tower_dir, torch_dtype=torch.float32, attn_implementation="eager")
    return vision.eval(), layers, pre


def connector_choice(cfg: dict, layers: ConnectorLayers, siglip: bool, tower_hidden: int) -> str:
    """The checkpoint's connector kind, checked against its projector's width; CLIP's feature layer is the
    checkpoint's choice (set on `layers`)."""
    if not siglip:
        layers.select_layer = int(cfg.get("mm_vision_select_layer", -2))
        if cfg.get("mm_vision_select_feature", "patch") != "patch":
            raise CheckpointError(f"mm_vision_select_feature {cfg['mm_vision_select_feature']!r} is not supported (expected 'patch')")
    kind = cfg["mm_dense_connector_type"]
    width = tower_hidden * connector_width_factor(kind)
    if cfg["mm_hidden_size"] != width:
        raise CheckpointError(f"mm_hidden_size {cfg['mm_hidden_size']} does not match {kind} on a {tower_hidden}-wide tower ({width})")
    return kind


def load_official(checkpoint: Path, vision_tower: Path | None = None) -> tuple[DenseConnectorMLLM, dict, dict]:
    """(model in fp32, checkpoint config, vision preprocessing) without a second copy of the weights."""
    from safetensors import safe_open
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = read_config(checkpoint)
    siglip = is_siglip_tower(cfg)
    if siglip and "mm_vision_select_layer" in cfg and cfg["mm_vision_select_layer"] not in (-1, -2):
        log(f"note: mm_vision_select_layer={cfg['mm_vision_select_layer']} is ignored for SigLIP, as in the reference")
    tower_dir = resolve_tower(checkpoint, cfg, vision_tower)
    log(f"vision tower: {tower_dir} ({'SigLIP' if siglip else 'CLIP'})")
    vision, layers, pre = load_tower(tower_dir, siglip)
    kind = connector_choice(cfg, layers, siglip, vision.config.hidden_size)

    log(f"language model: {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, vocab {cfg['vocab_size']}")
    llm_cfg = LlamaConfig(**{k: v for k, v in cfg.items() if not k.startswith("mm_") and k not in ("architectures", "model_type")})
    llm = LlamaForCausalLM.from_pretrained(checkpoint, config=llm_cfg, torch_dtype=torch.float32, attn_implementation="eager")
    llm.config._attn_implementation = "eager"
    model = DenseConnectorMLLM(vision, llm, kind, layers, vision.config.hidden_size)

    proj, tower_keys = {}, {}
    for shard in sorted(checkpoint.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            for k in f.keys():
                if k.startswith("model.mm_projector."):
                    proj[k[len("model.mm_projector."):]] = f.get_tensor(k).float()
                elif k.startswith("model.vision_tower.vision_tower."):
                    tower_keys[k[len("model.vision_tower.vision_tower."):]] = f.get_tensor(k).float()
    need = {"0.weight", "0.bias", "2.weight", "2.bias"}
    if need - set(proj):
        raise CheckpointError(f"{checkpoint}: projector weights missing: {', '.join('model.mm_projector.' + k for k in sorted(need - set(proj)))}")
    model.mm_projector.load_state_dict(proj)
    if tower_keys:  # a tower fine-tuned with the LLM overrides the downloaded one
        missing, unexpected = vision.load_state_dict(tower_keys, strict=False)
        log(f"vision tower weights from the checkpoint: {len(tower_keys)} tensors ({len(unexpected)} unused)")
    return model.eval(), cfg, pre


def tokenizer_files(checkpoint: Path, out: Path) -> None:
    """tokenizer.json + tokenizer_config.json into `out` (a fast tokenizer is made from tokenizer.model if needed)."""
    import shutil

    if (checkpoint / "tokenizer.json").exists():
        shutil.copy(checkpoint / "tokenizer.json", out / "tokenizer.json")
        shutil.copy(checkpoint / "tokenizer_config.json", out / "tokenizer_config.json")
        return
    log("no tokenizer.json: converting tokenizer.model to a fast tokenizer (needs sentencepiece and protobuf)")
    from transformers import AutoTokenizer

    try:
        fast = AutoTokenizer.from_pretrained(checkpoint, use_fast=True, from_slow=True)
        slow = AutoTokenizer.from_pretrained(checkpoint, use_fast=False)
    except Exception as e:  # noqa: BLE001 - say what to install
        raise CheckpointError(f"cannot convert {checkpoint / 'tokenizer.model'}: {e} (pip install sentencepiece protobuf)") from e
    probe = "A chat between a curious user and an artificial intelligence assistant. USER: \nWhat is in the image? ASSISTANT:"
    for piece in probe.split("\n"):
        if fast(piece).input_ids != slow(piece).input_ids:
            raise CheckpointError("the converted fast tokenizer disagrees with the reference's slow tokenizer on " + repr(piece))
    fast.save_pretrained(out)
    for extra in ("special_tokens_map.json", "tokenizer.model"):
        if (out / extra).exists():
            (out / extra).unlink()


def prompt_config(checkpoint: Path, pack_tok_dir: Path, cfg: dict, conv_mode: str | None) -> dict:
    """The manifest's prompt section and the chat template written into the pack's tokenizer_config.json."""
    from .templates import SYSTEM_PROMPTS, TEMPLATES, pick_conv_mode

    tok = json.loads((pack_tok_dir / "tokenizer.json").read_text())
    tok_cfg_path = pack_tok_dir / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text())
    specials = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    vocab = tok.get("model", {}).get("vocab", {})
    ids = {**(vocab if isinstance(vocab, dict) else {}), **specials}
    mode = conv_mode or pick_conv_mode(cfg, set(specials))
    token = lambda v: v.get("content") if isinstance(v, dict) else v  # noqa: E731
    bos, eos = token(tok_cfg.get("bos_token")), token(tok_cfg.get("eos_token"))
    if eos not in ids:
        raise CheckpointError(f"eos_token {eos!r} of tokenizer_config.json is not in the vocabulary")
    eos_ids = [ids[eos]]
    if mode == "llama_3":  # the reference stops on eos_token_id and <|eot_id|>
        if "<|eot_id|>" not in ids:
            raise CheckpointError("conversation mode llama_3 needs <|eot_id|> in the vocabulary")
        eos_ids = [ids["<|eot_id|>"]] + [i for i in eos_ids if i != ids["<|eot_id|>"]]
    tok_cfg["chat_template"] = TEMPLATES[mode]
    tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n")
    log(f"conversation template: {mode}")
    return {
        "chatTemplate": TEMPLATES[mode],
        "imageToken": "<image>",
        "bosToken": bos,
        "eosToken": eos,
        "eosTokenIds": eos_ids,
        "addBos": tok_cfg.get("add_bos_token", True),
        "systemPrompt": SYSTEM_PROMPTS[mode],
        "convMode": mode,
    }
