"""Ship a trained run as the built-in model: its checkpoint (weights stored as fp16, the official layout) in
`models/builtin/checkpoint/`, and the fp32 pack converted from exactly those weights in `build/models/builtin-shapes/`.

    python -m loupe_dc.ship --run runs/dci

Storing the checkpoint in fp16 halves it in git; the pack is converted from the fp16-rounded weights, so the
parity test (pack vs checkpoint) compares the same numbers.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .convert import export_pack
from .modeling import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def to_fp16(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    for f in dst.rglob("*.safetensors"):
        state = load_file(str(f))
        save_file({k: v.to(torch.float16).contiguous() for k, v in state.items()}, str(f), metadata={"format": "pt"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--version", required=True)
    args = ap.parse_args()
    ckpt = ROOT / "models" / "builtin" / "checkpoint"
    to_fp16(args.run / "checkpoint", ckpt)
    model, cfg = load_checkpoint(ckpt)
    (ROOT / "build" / "models").mkdir(parents=True, exist_ok=True)
    hybrid = getattr(model.vision.config, "model_type", "") == "loupe_hybrid"
    about = ("Built-in Dense Connector (DCI) model, trained here on synthetic still images of flat shapes; its vision tower's "
             "first stages are ImageNet EfficientNet-Lite0 (Apache-2.0)." if hybrid else
             "Built-in Dense Connector (DCI) model, trained from scratch on synthetic still images of flat shapes.")
    export_pack(model, cfg, ckpt, ROOT / "build" / "models" / "builtin-shapes", "builtin-shapes", args.version, "MIT",
                about, "synthetic flat shapes (circle, square, triangle) in eight colors")
    print(f"shipped {args.run} as {ckpt} and build/models/builtin-shapes")


if __name__ == "__main__":
    main()
