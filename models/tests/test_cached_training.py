"""Training on cached features (loupe_dc.pool, loupe_dc.train_cached): the cached path computes what the exported
tower computes from pixels, the pool's labels describe what was drawn, and questions drawn from them are right."""

import random

import numpy as np
import torch

from loupe_dc.modeling import HybridVisionConfig, HybridVisionTower, lite0_weights_path
from loupe_dc.pool import GRID, IMAGE_SIZE, Pool, build, centre_cells
from loupe_dc.shapes import COLORS, HONEST_ANSWER, SHAPES, ShapeSpec, letterbox, random_cast, render_scene, to_pixels
from loupe_dc.train_cached import Sampler, expand_kv, one_question
from loupe_dc.text import PromptCodec, train_tokenizer


def test_cached_front_gives_the_towers_own_features():
    torch.manual_seed(0)
    tower = HybridVisionTower(HybridVisionConfig(image_size=IMAGE_SIZE, pixel_path=True)).eval()
    tower.load_lite0(lite0_weights_path())
    rng = random.Random(3)
    px = torch.from_numpy(np.stack([to_pixels(letterbox(render_scene(rng, c, c).image, IMAGE_SIZE, rng)) for c in [random_cast(rng) for _ in range(4)]]))
    with torch.no_grad():
        whole = tower(px)
        # the pool stores fp16: the features the training sees are the exported graph's within fp16 rounding
        cached = tower.from_front(tower.front(px).half().float(), tower.pixel_cells(px).half().float())
        exact = tower.from_front(tower.front(px), tower.pixel_cells(px))
    for a, b in zip(whole.hidden_states, exact.hidden_states):
        assert torch.equal(a, b)
    for a, b in zip(whole.hidden_states, cached.hidden_states):
        assert (a - b).abs().max() < 2e-2, (a - b).abs().max()
    assert whole.last_hidden_state.shape == (4, GRID * GRID, 192)
    # the colour path reads each cell's own pixels: changing one cell's pixels changes that token's embedding only
    cells = tower.pixel_cells(px)
    bumped = cells.clone()
    bumped[:, :, 0:4, 4:8] += 1.0  # cell (0, 1)
    with torch.no_grad():
        e0 = tower.from_front(tower.front(px), cells).hidden_states[0]
        e1 = tower.from_front(tower.front(px), bumped).hidden_states[0]
    changed = (e0 - e1).abs().amax(-1)[0]
    assert changed[1] > 0 and changed[[i for i in range(GRID * GRID) if i != 1]].max() == 0


def test_centre_cell_labels_sit_where_the_shape_was_drawn():
    rng = random.Random(5)
    cast = [ShapeSpec("circle", "red")]
    st = render_scene(rng, cast, cast)
    cells = centre_cells(st, GRID)
    assert (cells > 0).sum() == 1
    cls = int(cells.max())
    assert cls == 1 + SHAPES.index("circle") * len(COLORS) + list(COLORS).index("red")


def test_pool_round_trip_and_questions(tmp_path):
    path = build(tmp_path, groups=6, seed=9, renderings=3, distractor_share=0.0, shard=0, shards=1, bank_dir=tmp_path / "none")
    pool = Pool([path])
    assert len(pool) == 18 and len(pool.groups) == 6
    assert pool.front.shape == (18, 80, GRID, GRID) and pool.cells.shape == (18, 3, IMAGE_SIZE // 4, IMAGE_SIZE // 4)
    for g in pool.groups:
        first = {tuple(m[:2]) for m in pool.members[g[0]] if m[0] >= 0}
        for i in g[1:]:  # every rendering shows a subset of the group's cast, the first one all of it
            assert {tuple(m[:2]) for m in pool.members[i] if m[0] >= 0} <= first
        assert (pool.centre[g[0]] > 0).sum() == len(first)
    tok = train_tokenizer([f"USER: What color is the {k}? ASSISTANT: {c}" for k in SHAPES for c in COLORS] + [HONEST_ANSWER])
    sampler = Sampler(pool, PromptCodec(tok), 1, 3, (3, 6))
    for _ in range(30):
        idx, pooled, turns = sampler.sample()
        cast, _ = sampler.cast_of(idx)
        assert 3 <= len(turns) <= 6 and (pooled or len(idx) == 1)
        for q, a in turns:
            if a in COLORS:  # a colour answer names the colour of the shape the question names
                assert ShapeSpec(next(k for k in SHAPES if k in q), a) in cast


def test_questions_cover_absent_and_background_forms():
    rng = random.Random(1)
    cast = [ShapeSpec("circle", "yellow")]
    answers = [one_question(rng, cast, ["blue"])[1] for _ in range(2000)]
    assert any(a.startswith("There is no ") for a in answers)
    assert "Nothing is blue." in answers
    assert "A yellow circle." in answers
    assert all(a != "There is no circle." for a in answers)
    assert [one_question(rng, [], [])[1] for _ in range(20)] == [HONEST_ANSWER] * 20


def test_expanded_kv_heads_compute_the_same_function():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = dict(vocab_size=50, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=6, attn_implementation="eager")
    small = LlamaForCausalLM(LlamaConfig(num_key_value_heads=2, **base)).eval()
    full = LlamaForCausalLM(LlamaConfig(num_key_value_heads=6, **base)).eval()
    full.load_state_dict(expand_kv(small.state_dict(), 6, 2, 6, 8))
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        assert torch.allclose(small(ids).logits, full(ids).logits, atol=1e-5)
