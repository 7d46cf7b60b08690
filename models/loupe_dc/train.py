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

from .modeling import BuiltinConfig, DenseConnectorMLLM, temporal_pool
from .shapes import corpus_for_tokenizer, letterbox, make_sample, to_pixels
from .text import PromptCodec, save_tokenizer, train_tokenizer
from tokenizers import Tokenizer


def distractor_bank(path: Path) -> list:
    from PIL import Image

    return [Image.open(p).convert("RGB") for p in sorted(path.glob("*.png"))] if path.exists() else []


def batch_producer(queue: mp.Queue, seed: int, batch_size: int, image_size: int, tokenizer_path: str, bank_dir: str, max_images: int):
    torch.set_num_threads(1)
    rng = random.Random(seed)
    codec = PromptCodec(Tokenizer.from_file(tokenizer_path))
    bank = distractor_bank(Path(bank_dir))
    tokens_per_image = (image_size // 16) ** 2  # rough, for bucketing only
    while True:  # draw 4 batches at once and group them by length, so little compute goes to padding
        pool = []
        for _ in range(batch_size * 4):
            s = make_sample(rng, bank, max_images)
            pixels = np.stack([to_pixels(letterbox(st.image, image_size, rng)) for st in s.stills])
            ids, labels, at = codec.conversation(s.turns)
            pool.append((pixels, s.pooled, ids, labels, at))
        pool.sort(key=lambda x: len(x[2]) + len(x[0]) * tokens_per_image)
        batches = [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
        rng.shuffle(batches)
        for b in batches:
            queue.put(b)


def forward_batch(model: DenseConnectorMLLM, samples, pad_id: int) -> torch.Tensor:
    pixels = torch.from_numpy(np.concatenate([s[0] for s in samples]))
    feats = model.encode_images(pixels)  # (N_images, P, D)
    embed = model.llm.get_input_embeddings()
    seqs, labs, cursor = [], [], 0
    for px, pooled, ids, labels, at in samples:
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
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1), ignore_index=-100)


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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.run.mkdir(parents=True, exist_ok=True)

    tok_path = args.run / "tokenizer.json"
    if not tok_path.exists():  # the tokenizer is part of the run: trained once, kept on resume
        save_tokenizer(train_tokenizer(corpus_for_tokenizer(random.Random(1234), 20000)), args.run)
    codec = PromptCodec(Tokenizer.from_file(str(tok_path)))
    cfg = BuiltinConfig(connector=args.connector)
    model = DenseConnectorMLLM.new_builtin(cfg, codec.tok.get_vocab_size(), codec.bos, codec.eos, codec.pad)
    if args.vision_init and not (args.run / "state.pt").exists():
        model.vision.load_state_dict(torch.load(args.vision_init))
        print(f"vision tower from {args.vision_init}")
    vision_params = list(model.vision.parameters())
    vision_ids = {id(p) for p in vision_params}
    groups = [
        {"params": vision_params, "lr_scale": args.vision_lr_scale if args.vision_init else 1.0},
        {"params": [p for p in model.parameters() if id(p) not in vision_ids], "lr_scale": 1.0},
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    state_path = args.run / "state.pt"
    spent, step, seed = 0.0, 0, args.seed
    if state_path.exists():
        st = torch.load(state_path)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        spent, step, seed = st["spent"], st["step"], st["seed"] + 1  # new data stream after a resume
        print(f"resumed at step {step}, {spent / 60:.1f} min spent")
    budget = args.minutes * 60
    if args.snapshot:
        write_checkpoint(model, codec, cfg, args.snapshot, spent, step)
        return

    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue(maxsize=4)
    worker = ctx.Process(target=batch_producer, args=(queue, seed * 7919, args.batch, cfg.image_size, str(tok_path), args.bank, args.max_images), daemon=True)
    worker.start()

    def save_state() -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "spent": spent, "step": step, "seed": seed}, tmp)
        os.replace(tmp, state_path)

    last_save, ema = time.time(), None
    model.train()
    def fraction_done() -> float:
        return step / args.steps if args.steps else spent / budget

    while fraction_done() < 1:
        t0 = time.time()
        samples = queue.get()
        frac = fraction_done()
        lr = args.lr * min(1.0, (step + 1) / 150) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        loss = forward_batch(model, samples, codec.pad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        spent += time.time() - t0
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 25 == 0:
            print(f"step {step} loss {ema:.4f} lr {lr:.2e} {spent / 60:.1f} min, {100 * fraction_done():.0f}% done", flush=True)
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
