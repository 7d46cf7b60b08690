"""Tokenizer and prompt format of the built-in model (vicuna_v1 turns without the system prompt).

Prompts are tokenized the way the reference does (`tokenizer_image_token`): the text is split at
`<image>`, each piece is tokenized on its own (the first with BOS), and the visual tokens go between.
The engine in TypeScript does exactly this from `tokenizer.json` and the Jinja chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
IMAGE = "<image>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {{ message['content'] }} "
    "{% else %}ASSISTANT: {{ message['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def train_tokenizer(texts: list[str], vocab_size: int = 640) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)])
    return tok


def save_tokenizer(tok: Tokenizer, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
             "add_bos_token": True, "model_max_length": 2048, "chat_template": CHAT_TEMPLATE},
            indent=2,
        )
    )


class PromptCodec:
    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self.bos = tok.token_to_id(BOS)
        self.eos = tok.token_to_id(EOS)
        self.pad = tok.token_to_id(PAD)

    def encode(self, text: str, first: bool = False) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=True).ids
        return ids if first else ids[1:] if ids and ids[0] == self.bos else ids

    def conversation(self, turns: list[tuple[str, str]]) -> tuple[list[int], list[int], int]:
        """ids, labels (-100 outside answers), index where the visual tokens go (before ids[index])."""
        head = self.encode("USER: ", first=True)
        ids, labels = list(head), [-100] * len(head)
        for i, (q, a) in enumerate(turns):
            prompt = (f"\n{q} ASSISTANT:" if i == 0 else f"USER: {q} ASSISTANT:")
            p = self.encode(prompt)
            ans = self.encode(f" {a}") + [self.eos]
            ids += p + ans
            labels += [-100] * len(p) + ans
        return ids, labels, len(head)
