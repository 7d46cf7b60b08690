"""The speed yardstick's helpers (the runtimes themselves are not installed here: bench:real prepares them)."""

from loupe_dc.bench_real import peak_rss_mb, prompt_ids, summary


def test_prompt_ids_are_fixed_and_inside_the_vocabulary():
    ids = prompt_ids(49152, 2080)
    assert ids == prompt_ids(49152, 2080) and len(ids) == 2080
    assert min(ids) >= 100 and max(ids) < 49152 - 100
    assert prompt_ids(49152, 16, offset=2080) != ids[:16]  # the follow-up is other tokens


def test_summary_takes_medians_per_figure():
    runs = [{"decode_tok_s": 10.0, "ttft_first_ms": 300.0}, {"decode_tok_s": 30.0, "ttft_first_ms": 100.0},
            {"decode_tok_s": 20.0, "ttft_first_ms": 200.0}]
    assert summary(runs, "1.0") == {"decode_tok_s": 20.0, "ttft_first_ms": 200.0, "runs": 3, "version": "1.0"}


def test_peak_rss_is_this_process():
    assert 1 < peak_rss_mb() < 100_000


def test_llamacpp_checkpoint_view_is_a_plain_llama(tmp_path):
    """llama.cpp's converter reads a LLaVA checkpoint through a view: the same files, config.json a Llama one."""
    import json

    from loupe_dc.llamacpp_gguf import checkpoint_view

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama",
                                                  "hidden_size": 64, "mm_hidden_size": 96, "mm_vision_tower": "x"}))
    (ckpt / "model.safetensors").write_bytes(b"weights")
    (ckpt / "tokenizer.json").write_text("{}")
    checkpoint_view(ckpt, tmp_path / "view")
    cfg = json.loads((tmp_path / "view" / "config.json").read_text())
    assert cfg == {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64}
    assert (tmp_path / "view" / "model.safetensors").read_bytes() == b"weights"
    assert (tmp_path / "view" / "model.safetensors").is_symlink()
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "llava_llama"  # the checkpoint untouched
