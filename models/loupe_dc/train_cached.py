"""Train the built-in MLLM on cached CNN features (loupe_dc.pool): the hybrid tower's trainable rest, the Dense
Connector's projector and the LLM together, on stills only, at one thread.

    python -m loupe_dc.train_cached --pool ~/.cache/loupe/pool --heldout ~/.cache/loupe/heldout \\
        --llm-init builtin/checkpoint --minutes 90 --run ~/.cache/loupe/runs/a

What differs from loupe_dc.train (measured in ../shared/MODEL-NOTES.md and models/README.md):
- the frozen EfficientNet front is read from the pool, not computed: a step is ~1 s instead of ~5;
- the loss weighs each *answer* equally (long refusals no longer dominate the token count), plus an object-centred
  auxiliary loss on the tower (the cell holding a shape's centre names its kind and colour; every cell its cover);
- 3-6 questions per sample from a mix with enough absent-shape, describe, background-colour and set questions;
- the LLM may start from a checkpoint with fewer KV heads: its K/V projections are repeated, which computes the same
  function, and the heads are then free to differ (--kv-heads).
Resumable (state written atomically every 3 minutes); a log line every 25 steps with steps/s and /proc/loadavg; a
teacher-forced held-out evaluation (exact answers by question type) every --eval-every steps into eval.jsonl.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from .modeling import BuiltinConfig, DenseConnectorMLLM, dense_connector, lite0_weights_path, load_checkpoint, temporal_pool
from .pool import COLOR_NAMES, GRID, Pool
from .shapes import (COLORS, HONEST_ANSWER, PATCH_CLASSES, SHAPES, ShapeSpec, color_question, count_question, describe,
                     describe_question, honest_question, presence_question, random_ood_question, shape_question)
from .evaluate import question_type
from .text import PromptCodec, save_tokenizer
from .train import write_checkpoint

CENTRE_CLASSES = 1 + len(SHAPES) * len(COLORS)


def one_question(rng: random.Random, cast: list[ShapeSpec], backgrounds: list[str]) -> tuple[str, str]:
    """One question and its exact answer about stills whose shapes, left to right, are `cast` (the forms of shapes.py)."""
    if not cast:
        return honest_question(rng), HONEST_ANSWER
    kinds = {s.kind: s for s in cast}
    colors = {s.color: s for s in cast}
    r = rng.random()
    if r < 0.14:
        s = rng.choice(cast)
        return color_question(rng, s.kind), s.color
    if r < 0.22:
        missing = [k for k in SHAPES if k not in kinds]
        if missing:
            kind = rng.choice(missing)
            return color_question(rng, kind), f"There is no {kind}."
        r = 0.3  # every kind is there: ask something else
    if r < 0.36:
        s = rng.choice(cast)
        return shape_question(rng, s.color), s.kind
    if r < 0.44:
        pool = backgrounds if backgrounds and rng.random() < 0.4 else [c for c in COLORS if c not in colors]
        color = rng.choice(pool)
        return shape_question(rng, color), f"Nothing is {color}."
    if r < 0.53:
        return count_question(rng), str(len(cast))
    if r < 0.63:
        s = rng.choice(cast)
        return presence_question(rng, s.color, s.kind), "yes"
    if r < 0.77:
        s = rng.choice(cast)
        u = rng.random()
        if u < 0.2 and backgrounds:
            color, kind = rng.choice(backgrounds), rng.choice(SHAPES)
        elif u < 0.55:
            color, kind = rng.choice(list(COLORS)), s.kind
        elif u < 0.85:
            color, kind = s.color, rng.choice(SHAPES)
        else:
            color, kind = rng.choice(list(COLORS)), rng.choice(SHAPES)
        return presence_question(rng, color, kind), "yes" if ShapeSpec(kind, color) in cast else "no"
    if r < 0.95:
        return describe_question(rng), describe(cast)
    return random_ood_question(rng), HONEST_ANSWER


class Sampler:
    """Samples of (still indices, pooled, turns) from a pool, and their tensors."""

    def __init__(self, pool: Pool, codec: PromptCodec, seed: int, max_images: int, turns: tuple[int, int]):
        self.pool, self.codec, self.rng = pool, codec, random.Random(seed)
        self.max_images, self.turns = max_images, turns
        self.domain = [g for g in pool.groups if pool.in_domain[g[0]]]
        self.other = [g for g in pool.groups if not pool.in_domain[g[0]]]

    def cast_of(self, idx: list[int]) -> tuple[list[ShapeSpec], list[str]]:
        xs: dict[ShapeSpec, list[float]] = {}
        for i in idx:
            for kind, color, x in self.pool.members[i]:
                if kind >= 0:
                    xs.setdefault(ShapeSpec(SHAPES[kind], COLOR_NAMES[color]), []).append(x / 1000)
        backgrounds = sorted({COLOR_NAMES[self.pool.background[i]] for i in idx if self.pool.background[i] >= 0})
        return sorted(xs, key=lambda s: sum(xs[s]) / len(xs[s])), backgrounds

    def sample(self, n_turns: int | None = None, k: int | None = None):
        rng = self.rng
        if k is None:
            r = rng.random()
            k = 1 if r < 0.4 else rng.randint(2, self.max_images)
        pooled = k > 1 or rng.random() < 0.25
        group = rng.choice(self.other if rng.random() < 0.1 else self.domain)
        if k == 1:
            shown = [i for i in group if self.pool.members[i, 0, 0] >= 0]
            idx = [rng.choice(shown if shown and rng.random() < 0.95 else list(group))]
        else:
            idx = rng.sample(list(group), min(k, len(group)))
        cast, backgrounds = self.cast_of(idx)
        n = n_turns or rng.randint(*self.turns)
        return idx, pooled, [one_question(rng, cast, backgrounds) for _ in range(n)]

    def batch(self, samples):
        idx = [i for s in samples for i in s[0]]
        front = torch.from_numpy(self.pool.front[idx].astype(np.float32))
        cells = torch.from_numpy(self.pool.cells[idx].astype(np.float32))
        cover = torch.from_numpy(self.pool.cover[idx].astype(np.int64))
        centre = torch.from_numpy(self.pool.centre[idx].astype(np.int64))
        texts = [self.codec.conversation(s[2]) for s in samples]
        return front, cells, cover, centre, [(len(s[0]), s[1], *t) for s, t in zip(samples, texts)]


def expand_kv(llm_state: dict, heads: int, old_kv: int, new_kv: int, head_dim: int) -> dict:
    """Repeat each KV head's projection for the query heads that shared it: the same function with new_kv heads."""
    if old_kv == new_kv:
        return llm_state
    rep = new_kv // old_kv
    out = dict(llm_state)
    for k, v in llm_state.items():
        if k.endswith(("k_proj.weight", "v_proj.weight")):
            out[k] = v.view(old_kv, head_dim, -1).repeat_interleave(rep, 0).reshape(new_kv * head_dim, -1).clone()
    return out


def forward(model: DenseConnectorMLLM, heads: dict, batch, pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """(answer loss: each answer weighs the same, tower aux loss, per-token logits, per-sample answer spans)."""
    front, cells, cover, centre, texts = batch
    out = model.vision.from_front(front, cells)
    feats = model.mm_projector(dense_connector(out.hidden_states, model.kind, model.layers))
    last = out.last_hidden_state
    cw = torch.ones(PATCH_CLASSES)
    cw[2:] = 4.0
    aux = F.cross_entropy(heads["centre"](last).reshape(-1, CENTRE_CLASSES), centre.reshape(-1),
                          weight=torch.tensor([0.2] + [1.0] * (CENTRE_CLASSES - 1))) \
        + 0.5 * F.cross_entropy(heads["cover"](last).reshape(-1, PATCH_CLASSES), cover.reshape(-1), weight=cw)
    embed = model.llm.get_input_embeddings()
    seqs, labs, cursor = [], [], 0
    for n_img, pooled, ids, labels, at in texts:
        f = feats[cursor : cursor + n_img]
        cursor += n_img
        if pooled:
            f = temporal_pool(f)
        vis = f.reshape(-1, f.shape[-1])
        t = embed(torch.tensor(ids))
        seqs.append(torch.cat([t[:at], vis, t[at:]]))
        labs.append(labels[:at] + [-100] * len(vis) + labels[at:])
    longest = max(len(s) for s in seqs)
    x = torch.zeros(len(seqs), longest, seqs[0].shape[-1])
    y = torch.full((len(seqs), longest), -100, dtype=torch.long)
    w = torch.zeros(len(seqs), longest)
    mask = torch.zeros(len(seqs), longest, dtype=torch.long)
    spans, answers = [], 0
    for i, (s, l) in enumerate(zip(seqs, labs)):
        x[i, : len(s)], mask[i, : len(s)] = s, 1
        y[i, : len(l)] = torch.tensor(l)
        runs, start = [], None
        for j, v in enumerate(l + [-100]):  # contiguous answer tokens = one answer
            if v != -100 and start is None:
                start = j
            elif v == -100 and start is not None:
                runs.append((start, j))
                start = None
        for a, b in runs:
            w[i, a:b] = 1.0 / (b - a)
        answers += len(runs)
        spans.append(runs)
    logits = model.llm(inputs_embeds=x, attention_mask=mask).logits
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1), ignore_index=-100, reduction="none")
    loss = (ce * w[:, 1:].reshape(-1)).sum() / max(1, answers)
    return loss, aux, logits.detach(), [(spans[i], y[i]) for i in range(len(seqs))]


@torch.no_grad()
def heldout_eval(model, heads, sampler: Sampler, batches: list, pad: int) -> dict:
    """Teacher-forced exact answers by question type (every token of the answer right)."""
    model.eval()
    score: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for samples in batches:
        _, _, logits, spans = forward(model, heads, sampler.batch(samples), pad)
        pred = logits.argmax(-1)
        for (runs, y), s, p in zip(spans, samples, pred):
            for (a, b), (q, ans) in zip(runs, s[2]):
                ok = bool((p[a - 1 : b - 1] == y[a:b]).all())
                t = ("set-" if len(s[0]) > 1 else "") + question_type(q, ans)
                score[t][0] += ok
                score[t][1] += 1
    model.train()
    total = [sum(v[0] for v in score.values()), sum(v[1] for v in score.values())]
    return {"overall": total[0] / total[1], **{k: round(v[0] / v[1], 3) for k, v in sorted(score.items())}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=Path, nargs="+", required=True, help="pool folders or files (loupe_dc.pool)")
    ap.add_argument("--heldout", type=Path, nargs="+", required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--llm-init", type=Path, required=True, help="checkpoint whose LLM and tokenizer start the run")
    ap.add_argument("--minutes", type=float, default=90)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tower-lr-scale", type=float, default=1.0)
    ap.add_argument("--cnn-lr-scale", type=float, default=0.1)
    ap.add_argument("--aux", type=float, default=0.5, help="weight of the tower's object-centred loss")
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--projector-steps", type=int, default=50, help="first steps with the LLM frozen (LLaVA's stage 1)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--max-images", type=int, default=8)
    ap.add_argument("--turns", default="3-6")
    ap.add_argument("--eval-every", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.run.mkdir(parents=True, exist_ok=True)
    files = lambda ps: sorted(f for p in ps for f in ([p] if p.is_file() else p.glob("pool-*.npz")))  # noqa: E731
    pool, heldout = Pool(files(args.pool)), Pool(files(args.heldout))
    print(f"pool: {len(pool)} stills in {len(pool.groups)} groups; held out: {len(heldout)}", flush=True)

    tok = Tokenizer.from_file(str(args.llm_init / "tokenizer.json"))
    save_tokenizer(tok, args.run)
    codec = PromptCodec(tok)
    init_model, _ = load_checkpoint(args.llm_init)
    ic = init_model.llm.config
    cfg = BuiltinConfig.for_tower("hybrid", connector="dci", pixel_path=True, llm_hidden=ic.hidden_size,
                                  llm_layers=ic.num_hidden_layers, llm_heads=ic.num_attention_heads, llm_kv_heads=args.kv_heads,
                                  llm_intermediate=ic.intermediate_size)
    model = DenseConnectorMLLM.new_builtin(cfg, tok.get_vocab_size(), codec.bos, codec.eos, codec.pad)
    heads = torch.nn.ModuleDict({"centre": torch.nn.Linear(cfg.vision_hidden, CENTRE_CLASSES),
                                 "cover": torch.nn.Linear(cfg.vision_hidden, PATCH_CLASSES)})
    fresh = not (args.run / "state.pt").exists()
    if fresh:
        model.vision.load_lite0(lite0_weights_path())
        head_dim = ic.hidden_size // ic.num_attention_heads
        model.llm.load_state_dict(expand_kv(init_model.llm.state_dict(), ic.num_attention_heads, ic.num_key_value_heads, args.kv_heads, head_dim))
    del init_model
    tower = model.vision
    frozen, cnn = tower.split_cnn(tower.FRONT_BLOCKS)
    for p in frozen:
        p.requires_grad_(False)
    skip = {id(p) for p in frozen + cnn}
    tower_rest = [p for p in tower.parameters() if id(p) not in skip]
    groups = [
        {"params": tower_rest + list(heads.parameters()) + list(model.mm_projector.parameters()), "lr_scale": args.tower_lr_scale, "name": "tower"},
        {"params": cnn, "lr_scale": args.cnn_lr_scale, "name": "cnn"},
        {"params": list(model.llm.parameters()), "lr_scale": 1.0, "name": "llm"},
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    state_path = args.run / "state.pt"
    spent, step, seed = 0.0, 0, args.seed
    if not fresh:
        st = torch.load(state_path)
        model.load_state_dict(st["model"])
        heads.load_state_dict(st["heads"])
        opt.load_state_dict(st["opt"])
        spent, step, seed = st["spent"], st["step"], st["seed"] + 1
        print(f"resumed at step {step}, {spent / 60:.1f} min spent", flush=True)
    lo, hi = (int(v) for v in args.turns.split("-"))
    sampler = Sampler(pool, codec, seed * 7919, args.max_images, (lo, hi))
    ev = Sampler(heldout, codec, 20261207, args.max_images, (1, 1))
    eval_batches = [[ev.sample(n_turns=3) for _ in range(args.batch)] for _ in range(12)]  # fixed: n ~ 576 answers
    budget = args.minutes * 60

    def save_state() -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "heads": heads.state_dict(), "opt": opt.state_dict(), "spent": spent,
                    "step": step, "seed": seed, "args": vars(args) | {"pool": [str(p) for p in args.pool], "heldout": [], "run": str(args.run), "llm_init": str(args.llm_init)}}, tmp)
        os.replace(tmp, state_path)

    def log_eval() -> None:
        res = heldout_eval(model, heads, ev, eval_batches, codec.pad)
        line = {"step": step, "minutes": round(spent / 60, 1), **res}
        with open(args.run / "eval.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        print("eval", json.dumps(line), flush=True)

    model.train()
    last_save, ema, aux_ema, t_log, pending = time.time(), None, None, time.time(), []
    while spent < budget:
        t0 = time.time()
        if not pending:  # draw 4 batches at once and group them by length: little compute goes to padding
            draw = [sampler.sample() for _ in range(args.batch * 4)]
            draw.sort(key=lambda s: len(s[0]) * (32 if s[1] else 64) + 12 * len(s[2]))
            pending = [draw[i : i + args.batch] for i in range(0, len(draw), args.batch)]
            sampler.rng.shuffle(pending)
        samples = pending.pop()
        frac = spent / budget
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"] * (0.0 if g["name"] == "llm" and step < args.projector_steps else 1.0)
        loss, aux, _, _ = forward(model, heads, sampler.batch(samples), codec.pad)
        opt.zero_grad(set_to_none=True)
        (loss + args.aux * aux).backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        opt.step()
        step += 1
        spent += time.time() - t0
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        aux_ema = aux.item() if aux_ema is None else 0.95 * aux_ema + 0.05 * aux.item()
        if step % 25 == 0:
            load = Path("/proc/loadavg").read_text().split()[:3]
            print(f"step {step} loss/answer {ema:.4f} aux {aux_ema:.4f} lr {lr:.2e} {spent / 60:.1f} min {100 * frac:.0f}% "
                  f"{25 / (time.time() - t_log):.2f} steps/s load {' '.join(load)}", flush=True)
            t_log = time.time()
        if step % args.eval_every == 0:
            log_eval()
        if time.time() - last_save > 180:
            save_state()
            last_save = time.time()
    save_state()
    log_eval()
    model.eval()
    write_checkpoint(model, codec, cfg, args.run / "checkpoint", spent, step)
    print(f"done: {step} steps in {spent / 60:.1f} min -> {args.run / 'checkpoint'}", flush=True)


if __name__ == "__main__":
    main()
