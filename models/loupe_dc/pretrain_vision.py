"""Pretrain the built-in model's vision tower, as CLIP or SigLIP are pretrained before LLaVA uses them.

    python -m loupe_dc.pretrain_vision --minutes 6 --out runs/vision.pt

No pretrained tower can be had on our machines, so the small CLIP-style ViT first learns to see on its
own: a linear head on its last hidden state predicts, for every patch, which shape (kind and color)
covers it, background, or other content (noise, text, test patterns). Still images only. The head is
thrown away; the MLLM training then starts from this tower.

    python -m loupe_dc.pretrain_vision --tower hybrid --minutes 30 --out runs/hybrid-vision.pt

With --tower hybrid the tower is the hybrid one (ImageNet EfficientNet-Lite0 stages as the patch embedding,
transformer layers on top; loupe_dc.modeling.HybridVisionTower): one token per stride-16 cell, the same
per-patch objective; its early CNN blocks stay frozen, the last stage is fine-tuned at --cnn-lr-scale.
The per-patch labels only teach color to a plain ViT (a patch inside a shape looks the same for every
kind); the CNN cells see the shape's outline around them, so here they can teach kind as well.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .modeling import BuiltinConfig, lite0_weights_path, new_tower
from .shapes import PATCH_CLASSES, letterbox, patch_labels, random_cast, render_distractor, render_scene, to_pixels
from .train import distractor_bank


def producer(queue: mp.Queue, seed: int, batch: int, size: int, grid: int, bank_dir: str) -> None:
    torch.set_num_threads(1)
    rng = random.Random(seed)
    bank = distractor_bank(Path(bank_dir))
    while True:
        px, lab = [], []
        for _ in range(batch):
            if rng.random() < 0.15:
                still = render_distractor(rng, bank)
            else:
                cast = random_cast(rng)
                members = [s for s in cast if rng.random() < 0.85] or cast[:1]
                still = render_scene(rng, members, cast)
            px.append(to_pixels(letterbox(still.image, size, rng)))
            lab.append(patch_labels(still, grid))
        queue.put((np.stack(px), np.stack(lab)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=6)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--bank", default=str(Path(__file__).resolve().parent.parent / "data" / "distractors"))
    ap.add_argument("--tower", default="clip", choices=["clip", "hybrid"])
    ap.add_argument("--cnn-train-from", type=int, default=8, help="hybrid: CNN blocks from this index on are fine-tuned")
    ap.add_argument("--cnn-lr-scale", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=100, help="warmup steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    hybrid = args.tower == "hybrid"
    cfg = BuiltinConfig.for_tower(args.tower)
    tower, _ = new_tower(cfg)
    cnn = []
    if hybrid:
        tower.load_lite0(lite0_weights_path())
        frozen, cnn = tower.split_cnn(args.cnn_train_from)
        for p in frozen:
            p.requires_grad_(False)
    grid = cfg.image_size // (tower.config.cnn_stride if hybrid else cfg.patch_size)
    head = nn.Linear(cfg.vision_hidden, PATCH_CLASSES)
    cnn_ids = {id(p) for p in cnn}
    params = [p for p in tower.parameters() if p.requires_grad and id(p) not in cnn_ids] + list(head.parameters())
    opt = torch.optim.AdamW([{"params": params, "lr_scale": 1.0}] + ([{"params": cnn, "lr_scale": args.cnn_lr_scale}] if cnn else []),
                            lr=args.lr, weight_decay=0.01)
    params = params + cnn
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue(maxsize=6)
    worker = ctx.Process(target=producer, args=(queue, args.seed, args.batch, cfg.image_size, grid, args.bank), daemon=True)
    worker.start()
    budget, spent, step, ema = args.minutes * 60, 0.0, 0, None
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # atomically, so a probe can read the tower while it trains
        tmp = args.out.with_suffix(".tmp")
        torch.save(tower.state_dict(), tmp)
        os.replace(tmp, args.out)

    last_save = time.time()
    while spent < budget:
        t0 = time.time()
        px, lab = queue.get()
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * spent / budget)))
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        hidden = tower(pixel_values=torch.from_numpy(px)).last_hidden_state[:, 0 if hybrid else 1 :]  # (B, P, C): patch tokens
        logits = head(hidden)
        target = torch.from_numpy(lab)
        # Shapes cover few patches: weight them up so the tower does not settle for "background".
        weight = torch.ones(PATCH_CLASSES)
        weight[2:] = 4.0
        loss = F.cross_entropy(logits.reshape(-1, PATCH_CLASSES), target.reshape(-1), weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        spent += time.time() - t0
        with torch.no_grad():
            fg = target >= 2
            acc = (logits.argmax(-1)[fg] == target[fg]).float().mean().item() if fg.any() else 0.0
        ema = (loss.item(), acc) if ema is None else (0.95 * ema[0] + 0.05 * loss.item(), 0.95 * ema[1] + 0.05 * acc)
        if step % 10 == 0:
            print(f"step {step} loss {ema[0]:.4f} shape-patch acc {ema[1]:.3f} {spent / 60:.1f}/{args.minutes} min", flush=True)
        if time.time() - last_save > 300:
            save()
            last_save = time.time()
    worker.terminate()
    save()
    print(f"vision tower pretrained: {step} steps, {spent / 60:.1f} min -> {args.out}")


if __name__ == "__main__":
    main()
