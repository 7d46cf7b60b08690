"""Tower diagnostics: linear probes for shape kind and color on frozen tower features.

    python -m loupe_dc.probe --checkpoint builtin/checkpoint [--n-train 900 --n-test 450]
    python -m loupe_dc.probe --hybrid-tower runs/hybrid-vision/vision.pt     # a pretrained hybrid tower alone
    python -m loupe_dc.probe --hybrid-tower imagenet                          # ImageNet CNN stages, untrained layers

Held-out single-shape stills (one shape on its background, the training renderer, another seed than training).
Features are mean+max pooled over patches, read (a) from the tower's penultimate hidden state (what LLaVA's
projector reads) and (b) from the projected Dense Connector tokens the LLM sees. A multinomial logistic
regression is fitted on the training split and scored on the test split; chance is 33% for kind, 12.5% for
color. The language model cannot answer what these features do not carry.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .modeling import BuiltinConfig, DenseConnectorMLLM, HybridVisionTower, new_tower, dense_connector, lite0_weights_path, load_checkpoint
from .shapes import COLORS, SHAPES, ShapeSpec, letterbox, render_scene, to_pixels


def single_shape_stills(rng: random.Random, n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    px, kinds, colors = [], [], []
    for _ in range(n):
        spec = ShapeSpec(rng.choice(SHAPES), rng.choice(list(COLORS)))
        px.append(to_pixels(letterbox(render_scene(rng, [spec], [spec]).image, size)))
        kinds.append(SHAPES.index(spec.kind))
        colors.append(list(COLORS).index(spec.color))
    return np.stack(px), np.array(kinds), np.array(colors)


@torch.no_grad()
def features(model: DenseConnectorMLLM | HybridVisionTower, pixels: np.ndarray, batch: int = 64) -> dict[str, torch.Tensor]:
    """{'penultimate': (N, 2C), 'projected': (N, 2D)}: mean and max over patches (a tower alone: penultimate only)."""
    tower_only = isinstance(model, HybridVisionTower)
    vision, start, select = (model, 0, -2) if tower_only else (model.vision, 1 if model.layers.drop_cls else 0, model.layers.select_layer)
    out: dict[str, list[torch.Tensor]] = {"penultimate": []} if tower_only else {"penultimate": [], "projected": []}
    for i in range(0, len(pixels), batch):
        hs = vision(pixel_values=torch.from_numpy(pixels[i : i + batch]), output_hidden_states=True).hidden_states
        picked = {"penultimate": hs[select][:, start:]}
        if not tower_only:
            picked["projected"] = model.mm_projector(dense_connector(hs, model.kind, model.layers))
        for name, f in picked.items():
            out[name].append(torch.cat([f.mean(1), f.amax(1)], -1))
    return {k: torch.cat(v) for k, v in out.items()}


def linear_probe(x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray, classes: int) -> float:
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    w = torch.zeros(a.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=200, line_search_fn="strong_wolfe")
    y = torch.from_numpy(y_train)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(a @ w + bias, y) + 1e-3 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((b @ w + bias).argmax(1).numpy() == y_test).mean())


def probe(model: DenseConnectorMLLM | HybridVisionTower, n_train: int, n_test: int, seed: int) -> dict[str, dict[str, float]]:
    size = (model if isinstance(model, HybridVisionTower) else model.vision).config.image_size
    tr = single_shape_stills(random.Random(seed), n_train, size)
    te = single_shape_stills(random.Random(seed + 1), n_test, size)
    f_tr, f_te = features(model, tr[0]), features(model, te[0])
    return {name: {"kind": linear_probe(f_tr[name], tr[1], f_te[name], te[1], len(SHAPES)),
                   "color": linear_probe(f_tr[name], tr[2], f_te[name], te[2], len(COLORS))} for name in f_tr}


def print_probes(result: dict[str, dict[str, float]], n_test: int) -> None:
    print(f"\nLinear probes on frozen tower features (single-shape stills, n_test={n_test}; chance: kind 33.3%, color 12.5%)")
    print("| features | kind | color |\n|---|---|---|")
    for name, r in result.items():
        print(f"| {name} (mean+max over patches) | {100 * r['kind']:.1f}% | {100 * r['color']:.1f}% |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--hybrid-tower", help="a hybrid tower's state (loupe_dc.pretrain_vision), or 'imagenet' for its untrained start")
    ap.add_argument("--n-train", type=int, default=900)
    ap.add_argument("--n-test", type=int, default=450)
    ap.add_argument("--seed", type=int, default=20261201)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.hybrid_tower:
        model, _ = new_tower(BuiltinConfig.for_tower("hybrid"))
        model.load_lite0(lite0_weights_path()) if args.hybrid_tower == "imagenet" else model.load_state_dict(torch.load(args.hybrid_tower))
        model.eval()
    elif args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint)
    else:
        raise SystemExit("--checkpoint or --hybrid-tower")
    print_probes(probe(model, args.n_train, args.n_test, args.seed), args.n_test)


if __name__ == "__main__":
    main()
