"""Pretrain the built-in model's vision tower, as CLIP or SigLIP are pretrained before LLaVA uses them.

    python -m loupe_dc.pretrain_vision --minutes 6 --out runs/vision.pt

No pretrained tower can be had on our machines, so the small CLIP-style ViT first learns to see on its
own: a linear head on its last hidden state predicts, for every patch, which shape (kind and color)
covers it, background, or other content (noise, text, test patterns). Still images only. The head is
thrown away; the MLLM training then starts from this tower.
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

from .modeling import BuiltinConfig
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
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = BuiltinConfig()
    grid = cfg.image_size // cfg.patch_size
    tower = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_hidden * 4, num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads, image_size=cfg.image_size, patch_size=cfg.patch_size,
        hidden_act="quick_gelu", projection_dim=cfg.vision_hidden))
    head = nn.Linear(cfg.vision_hidden, PATCH_CLASSES)
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue(maxsize=6)
    worker = ctx.Process(target=producer, args=(queue, args.seed, args.batch, cfg.image_size, grid, args.bank), daemon=True)
    worker.start()
    budget, spent, step, ema = args.minutes * 60, 0.0, 0, None
    while spent < budget:
        t0 = time.time()
        px, lab = queue.get()
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * spent / budget)))
        for g in opt.param_groups:
            g["lr"] = lr
        hidden = tower(pixel_values=torch.from_numpy(px)).last_hidden_state[:, 1:]  # (B, P, C): patch tokens
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
        if step % 25 == 0:
            print(f"step {step} loss {ema[0]:.4f} shape-patch acc {ema[1]:.3f} {spent / 60:.1f}/{args.minutes} min", flush=True)
    worker.terminate()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    torch.save(tower.state_dict(), tmp)
    os.replace(tmp, args.out)
    print(f"vision tower pretrained: {step} steps, {spent / 60:.1f} min -> {args.out}")


if __name__ == "__main__":
    main()
