"""The Dense Connector MLLM (LLaVA-1.5 layout) built from Hugging Face transformers' own classes.

vision tower (CLIPVisionModel / SiglipVisionModel, output_hidden_states)
  -> Dense Connector (none | sti | sci | dci) -> mm_projector (Linear-GELU-Linear) -> LlamaForCausalLM

Saved in the official Dense Connector checkpoint layout: `config.json` (llava_llama keys:
mm_vision_tower, mm_dense_connector_type, mm_vision_select_layer, mm_projector_type, mm_hidden_size,
image_aspect_ratio), `model.safetensors` with `model.*` / `lm_head.*` / `model.mm_projector.{0,2}.*`,
and the vision tower it names. Layer choices are configuration (`mm_dense_connector_layers`); when a
checkpoint has none, the reference repository's indices for 24-layer CLIP and 27-layer SigLIP apply.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

CONNECTOR_TYPES = ("none", "sti", "sci", "dci")


@dataclass
class ConnectorLayers:
    """Which hidden states the connector reads. Indices into `hidden_states` (0 = embedding output)."""

    select_layer: int  # the "penultimate" features every variant starts from
    drop_cls: bool  # CLIP has a CLS token at position 0 that LLaVA drops; SigLIP has none
    dci_groups: list[list[int]]  # [[start, end), [start, end)]: averaged groups for DCI
    mid_layers: list[int]  # two mid layers for SCI (channels) and STI (tokens)
    sti_kernel: int = 8

    @staticmethod
    def reference_defaults(tower_type: str, num_layers: int) -> "ConnectorLayers":
        if tower_type == "siglip":  # the reference drops the last layer: 27 -> 26 layers, 27 hidden states
            return ConnectorLayers(-1, False, [[0, 13], [13, 26]], [7, 15])
        if num_layers == 24:
            return ConnectorLayers(-2, True, [[0, 12], [12, 24]], [7, 15])
        raise ValueError(f"no reference layer indices for a {num_layers}-layer {tower_type} tower; set mm_dense_connector_layers")

    @staticmethod
    def for_small_clip(num_layers: int) -> "ConnectorLayers":
        half = num_layers // 2
        return ConnectorLayers(-2, True, [[0, half], [half, num_layers]], [max(1, num_layers // 3), (2 * num_layers) // 3])


def connector_width_factor(kind: str) -> int:
    """Channel multiple of the connector's output relative to the tower's hidden size."""
    return {"none": 1, "sti": 1, "sci": 3, "dci": 3}[kind]


def dense_connector(hidden_states: tuple[torch.Tensor, ...], kind: str, layers: ConnectorLayers) -> torch.Tensor:
    """hidden_states: L+1 tensors (N, P(+1 CLS), C) -> visual features (N, tokens, C * width_factor)."""
    start = 1 if layers.drop_cls else 0
    base = hidden_states[layers.select_layer][:, start:]  # (N, P, C)
    if kind == "none":
        return base
    if kind == "dci":
        groups = [torch.stack(hidden_states[a:b], 0)[:, :, start:].mean(0) for a, b in layers.dci_groups]
        return torch.cat([base, *groups], dim=-1)  # (N, P, 3C)
    mids = [hidden_states[i][:, start:] for i in layers.mid_layers]
    if kind == "sci":
        return torch.cat([base, *mids], dim=-1)  # (N, P, 3C)
    if kind == "sti":  # average runs of k tokens along the flattened token axis, remainder dropped
        k = layers.sti_kernel
        pooled = [F.avg_pool1d(m.transpose(1, 2), k, k).transpose(1, 2) for m in mids]  # (N, P//k, C)
        return torch.cat([base, *pooled], dim=1)  # (N, P + 2P//k, C)
    raise ValueError(f"unknown mm_dense_connector_type {kind!r}")


def temporal_pool(features: torch.Tensor) -> torch.Tensor:
    """FreeVA: per-frame max-pool by 2 along tokens, odd last token dropped. (T, P, D) -> (T, P//2, D)."""
    return F.max_pool1d(features.transpose(1, 2), 2, 2).transpose(1, 2)


@dataclass
class BuiltinConfig:
    """Sizes of the built-in model (small enough to answer in well under a second on 2 CPU cores)."""

    connector: str = "dci"
    image_size: int = 96
    patch_size: int = 12
    vision_hidden: int = 128
    vision_layers: int = 6
    vision_heads: int = 4
    llm_hidden: int = 192
    llm_layers: int = 4
    llm_heads: int = 6
    llm_kv_heads: int = 2
    llm_intermediate: int = 512
    max_positions: int = 2048


class DenseConnectorMLLM(nn.Module):
    def __init__(self, vision: nn.Module, llm: LlamaForCausalLM, kind: str, layers: ConnectorLayers, vision_hidden: int):
        super().__init__()
        self.vision = vision
        self.llm = llm
        self.kind = kind
        self.layers = layers
        d = llm.config.hidden_size
        self.mm_projector = nn.Sequential(nn.Linear(vision_hidden * connector_width_factor(kind), d), nn.GELU(), nn.Linear(d, d))

    @staticmethod
    def new_builtin(cfg: BuiltinConfig, vocab_size: int, bos: int, eos: int, pad: int) -> "DenseConnectorMLLM":
        vision = CLIPVisionModel(
            CLIPVisionConfig(
                hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_hidden * 4, num_hidden_layers=cfg.vision_layers,
                num_attention_heads=cfg.vision_heads, image_size=cfg.image_size, patch_size=cfg.patch_size,
                hidden_act="quick_gelu", projection_dim=cfg.vision_hidden,
            )
        )
        llm = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=vocab_size, hidden_size=cfg.llm_hidden, intermediate_size=cfg.llm_intermediate,
                num_hidden_layers=cfg.llm_layers, num_attention_heads=cfg.llm_heads, num_key_value_heads=cfg.llm_kv_heads,
                max_position_embeddings=cfg.max_positions, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
                tie_word_embeddings=False, rope_theta=10000.0, attn_implementation="eager",
            )
        )
        return DenseConnectorMLLM(vision, llm, cfg.connector, ConnectorLayers.for_small_clip(cfg.vision_layers), cfg.vision_hidden)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> projected visual tokens (N, tokens, D)."""
        out = self.vision(pixel_values=pixel_values, output_hidden_states=True)
        return self.mm_projector(dense_connector(out.hidden_states, self.kind, self.layers))

    # ------------------------------------------------------- official checkpoint layout

    def save_checkpoint(self, out: Path, tokenizer_dir: Path | None = None, extra: dict | None = None) -> None:
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        tower_dir = out / "vision_tower"
        self.vision.save_pretrained(tower_dir, safe_serialization=True)
        cfg = self.llm.config.to_dict()
        cfg.update(
            architectures=["LlavaLlamaForCausalLM"], model_type="llava_llama", mm_vision_tower="./vision_tower",
            mm_dense_connector_type=self.kind, mm_projector_type="mlp2x_gelu",
            mm_hidden_size=self.mm_projector[0].in_features, mm_vision_select_layer=self.layers.select_layer,
            mm_vision_select_feature="patch", image_aspect_ratio="pad", mm_use_im_start_end=False,
            mm_dense_connector_layers=asdict(self.layers), **(extra or {}),
        )
        (out / "config.json").write_text(json.dumps(cfg, indent=2))
        state = {k if k.startswith("lm_head") else k: v.contiguous() for k, v in self.llm.state_dict().items()}
        state.update({f"model.mm_projector.{k}": v.contiguous() for k, v in self.mm_projector.state_dict().items()})
        save_file(state, str(out / "model.safetensors"))


def load_checkpoint(checkpoint: Path, vision_tower: Path | None = None) -> tuple[DenseConnectorMLLM, dict]:
    """Read a checkpoint in the official layout (config.json + safetensors + the vision tower it names)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, SiglipVisionConfig, SiglipVisionModel

    cfg_path = checkpoint / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{checkpoint} is not a Dense Connector checkpoint: no config.json")
    cfg = json.loads(cfg_path.read_text())
    for key in ("mm_vision_tower", "mm_projector_type", "mm_hidden_size"):
        if key not in cfg:
            raise ValueError(f"{cfg_path} lacks {key!r}: not a LLaVA/Dense Connector checkpoint")
    if cfg["mm_projector_type"] != "mlp2x_gelu":
        raise ValueError(f"unsupported mm_projector_type {cfg['mm_projector_type']!r} (expected mlp2x_gelu)")
    tower_dir = vision_tower or (checkpoint / cfg["mm_vision_tower"]).resolve()
    tower_cfg = AutoConfig.from_pretrained(tower_dir)
    tower_cfg = getattr(tower_cfg, "vision_config", tower_cfg)
    is_siglip = "siglip" in tower_cfg.model_type
    if is_siglip:
        tower_cfg = SiglipVisionConfig(**{k: v for k, v in tower_cfg.to_dict().items() if k in SiglipVisionConfig().to_dict()})
        vision = SiglipVisionModel.from_pretrained(tower_dir, config=tower_cfg) if any(tower_dir.glob("*.safetensors")) else SiglipVisionModel(tower_cfg)
    else:
        tower_cfg = CLIPVisionConfig(**{k: v for k, v in tower_cfg.to_dict().items() if k in CLIPVisionConfig().to_dict()})
        vision = CLIPVisionModel.from_pretrained(tower_dir, config=tower_cfg)
    if "mm_dense_connector_layers" in cfg:
        layers = ConnectorLayers(**cfg["mm_dense_connector_layers"])
    else:
        layers = ConnectorLayers.reference_defaults("siglip" if is_siglip else "clip", tower_cfg.num_hidden_layers)
    kind = cfg.get("mm_dense_connector_type", "none") or "none"
    llm_cfg = LlamaConfig(**{k: v for k, v in cfg.items() if not k.startswith("mm_")})
    llm_cfg._attn_implementation = "eager"
    state = {}
    for shard in sorted(checkpoint.glob("*.safetensors")):
        state.update(load_file(str(shard)))
    proj = {k[len("model.mm_projector."):]: state.pop(k) for k in list(state) if k.startswith("model.mm_projector.")}
    vis = {k: state.pop(k) for k in list(state) if k.startswith("model.vision_tower.")}
    llm = LlamaForCausalLM(llm_cfg)
    missing, unexpected = llm.load_state_dict(state, strict=False)
    if [m for m in missing if "rotary" not in m] or unexpected:
        raise ValueError(f"checkpoint weights do not match the LLM config: missing {missing[:4]}, unexpected {unexpected[:4]}")
    model = DenseConnectorMLLM(vision, llm, kind, layers, tower_cfg.hidden_size)
    if model.mm_projector[0].in_features != cfg["mm_hidden_size"]:
        raise ValueError(f"mm_hidden_size {cfg['mm_hidden_size']} != {connector_width_factor(kind)} x tower hidden {tower_cfg.hidden_size}")
    model.mm_projector.load_state_dict(proj)
    if vis:  # towers fine-tuned with the LLM are stored inside the checkpoint
        vision.load_state_dict({k.split("vision_tower.", 2)[-1]: v for k, v in vis.items()}, strict=False)
    return model.eval(), cfg
