"""A Vicuna/Llama-2 release ships only tokenizer.model: the converter makes the pack's tokenizer.json from it
(sentencepiece + protobuf, in requirements.txt) and checks it against the slow tokenizer the reference uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loupe_dc.official import CheckpointError, tokenizer_files
from loupe_dc.tiny import CORPUS


def _release_tokenizer(ckpt: Path) -> None:
    import sentencepiece as spm

    ckpt.mkdir()
    # Llama-2's settings that matter here: BPE, byte fallback, <unk> <s> </s> as ids 0-2, digits split, no
    # normalization and whitespace kept as it is.
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS * 4), model_prefix=str(ckpt / "tokenizer"),
                                   vocab_size=400, model_type="bpe", byte_fallback=True, split_digits=True,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
                                   minloglevel=2)
    (ckpt / "tokenizer.vocab").unlink()
    (ckpt / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": False, "model_max_length": 4096}))


def test_tokenizer_model_becomes_tokenizer_json(tmp_path: Path) -> None:
    ckpt, out = tmp_path / "vicuna", tmp_path / "pack"
    _release_tokenizer(ckpt)
    out.mkdir()
    tokenizer_files(ckpt, out)
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    ids = tok.encode("What is in the image?").ids
    assert ids[0] == 1 and len(ids) > 2  # <s> first, as LlamaTokenizer adds it


def test_unreadable_tokenizer_model_is_a_checkpoint_error(tmp_path: Path) -> None:
    ckpt, out = tmp_path / "broken", tmp_path / "pack"
    _release_tokenizer(ckpt)
    (ckpt / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    out.mkdir()
    with pytest.raises(CheckpointError, match="tokenizer.model"):
        tokenizer_files(ckpt, out)
