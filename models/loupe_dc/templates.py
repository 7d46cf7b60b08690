"""Conversation templates of the Dense Connector reference (`dc/conversation.py`), as Jinja chat templates.

Two modes are used by the released checkpoints: `vicuna_v1` (the Vicuna-7B/13B models) and `llama_3`
(the Llama-3-8B-Instruct model). A third, `chatml_direct` (the reference's MPT separator style with
ChatML roles), serves ChatML LLMs such as SmolLM2; note that the reference joins its turns with
`<|im_end|>` and no newline, unlike the LLMs' own ChatML templates, and it is kept that way. The Jinja templates render, byte for byte, what the reference's
`Conversation.get_prompt()` builds for the same turns; `reference_prompt()` is an independent
implementation of those two separator styles used to check that (tests and the parity reference).

The system prompt is a manifest field (`prompt.systemPrompt`) which the engine prepends as a system
message; without one, the templates fall back to the reference's text. The llama_3 mode's assistant
header reads `system`, not `assistant`: the reference defines its roles that way and the 8B model was
trained and evaluated with it, so it is kept.
"""

from __future__ import annotations

VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
LLAMA_3_SYSTEM = (
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language."
)
LLAMA_3_BEGIN = "<|begin_of_text|>"
LLAMA_3_SYSTEM_HEADER = "<|start_header_id|>system<|end_header_id|>\n\n"
LLAMA_3_USER_HEADER = "<|start_header_id|>user<|end_header_id|>\n\n"
LLAMA_3_ASSISTANT_HEADER = "<|start_header_id|>system<|end_header_id|>\n\n"  # sic: the reference's role 1
LLAMA_3_EOT = "<|eot_id|>"

CHATML_SYSTEM = "Answer the questions."
CHATML_SYSTEM_HEADER = "<|im_start|>system\n"
CHATML_USER = "<|im_start|>user\n"
CHATML_ASSISTANT = "<|im_start|>assistant\n"
CHATML_END = "<|im_end|>"

CONV_MODES = ("vicuna_v1", "llama_3", "chatml_direct")


def _jinja_str(s: str) -> str:
    """A Jinja string literal that both jinja2 and @huggingface/jinja read back as `s`."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _system_block(default: str) -> str:
    return (
        "{%- if messages and messages[0]['role'] == 'system' -%}{%- set system = messages[0]['content'] -%}"
        "{%- else -%}{%- set system = " + _jinja_str(default) + " -%}{%- endif -%}"
    )


VICUNA_V1_TEMPLATE = (
    _system_block(VICUNA_V1_SYSTEM)
    + "{{- system + ' ' -}}"
    + "{%- for message in messages -%}"
    + "{%- if message['role'] == 'user' -%}{{- 'USER: ' + message['content'] + ' ' -}}"
    + "{%- elif message['role'] == 'assistant' -%}{{- 'ASSISTANT: ' + message['content'] + '</s>' -}}"
    + "{%- endif -%}{%- endfor -%}"
    + "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)

LLAMA_3_TEMPLATE = (
    _system_block(LLAMA_3_SYSTEM)
    + "{{- " + _jinja_str(LLAMA_3_BEGIN + LLAMA_3_SYSTEM_HEADER) + " + system + " + _jinja_str(LLAMA_3_EOT) + " -}}"
    + "{%- for message in messages -%}"
    + "{%- if message['role'] == 'user' -%}{{- " + _jinja_str(LLAMA_3_USER_HEADER) + " + message['content'] + "
    + _jinja_str(LLAMA_3_EOT) + " -}}"
    + "{%- elif message['role'] == 'assistant' -%}{{- " + _jinja_str(LLAMA_3_ASSISTANT_HEADER) + " + message['content'] + "
    + _jinja_str(LLAMA_3_EOT) + " -}}"
    + "{%- endif -%}{%- endfor -%}"
    + "{%- if add_generation_prompt -%}{{- " + _jinja_str(LLAMA_3_ASSISTANT_HEADER) + " -}}{%- endif -%}"
)

CHATML_DIRECT_TEMPLATE = (
    _system_block(CHATML_SYSTEM)
    + "{{- " + _jinja_str(CHATML_SYSTEM_HEADER) + " + system + " + _jinja_str(CHATML_END) + " -}}"
    + "{%- for message in messages -%}"
    + "{%- if message['role'] == 'user' -%}{{- " + _jinja_str(CHATML_USER) + " + message['content'] + " + _jinja_str(CHATML_END) + " -}}"
    + "{%- elif message['role'] == 'assistant' -%}{{- " + _jinja_str(CHATML_ASSISTANT) + " + message['content'] + "
    + _jinja_str(CHATML_END) + " -}}"
    + "{%- endif -%}{%- endfor -%}"
    + "{%- if add_generation_prompt -%}{{- " + _jinja_str(CHATML_ASSISTANT) + " -}}{%- endif -%}"
)

TEMPLATES = {"vicuna_v1": VICUNA_V1_TEMPLATE, "llama_3": LLAMA_3_TEMPLATE, "chatml_direct": CHATML_DIRECT_TEMPLATE}
SYSTEM_PROMPTS = {"vicuna_v1": VICUNA_V1_SYSTEM, "llama_3": LLAMA_3_SYSTEM, "chatml_direct": CHATML_SYSTEM}


def reference_prompt(mode: str, turns: list[tuple[str, str | None]], system: str | None = None) -> str:
    """The prompt the reference builds for alternating (user, assistant) turns; None = the reply to generate.

    vicuna_v1 is the reference's SeparatorStyle.TWO (sep " ", sep2 "</s>", roles USER/ASSISTANT);
    llama_3 is SeparatorStyle.LLAMA_3 (sep "<|eot_id|>", the system text carrying <|begin_of_text|>);
    chatml_direct is SeparatorStyle.MPT (sep "<|im_end|>", roles carrying "<|im_start|>... \\n").
    """
    if mode == "vicuna_v1":
        text = (system if system is not None else VICUNA_V1_SYSTEM) + " "
        seps = (" ", "</s>")
        for i, (role, message) in enumerate(_roles(turns, ("USER", "ASSISTANT"))):
            text += f"{role}: {message}{seps[i % 2]}" if message else f"{role}:"
        return text
    if mode == "llama_3":
        text = LLAMA_3_BEGIN + LLAMA_3_SYSTEM_HEADER + (system if system is not None else LLAMA_3_SYSTEM) + LLAMA_3_EOT
        for role, message in _roles(turns, (LLAMA_3_USER_HEADER, LLAMA_3_ASSISTANT_HEADER)):
            text += role + message + LLAMA_3_EOT if message else role
        return text
    if mode == "chatml_direct":
        text = CHATML_SYSTEM_HEADER + (system if system is not None else CHATML_SYSTEM) + CHATML_END
        for role, message in _roles(turns, (CHATML_USER, CHATML_ASSISTANT)):
            text += role + message + CHATML_END if message else role
        return text
    raise ValueError(f"unknown conversation mode {mode!r} (known: {', '.join(CONV_MODES)})")


def _roles(turns: list[tuple[str, str | None]], names: tuple[str, str]) -> list[tuple[str, str | None]]:
    out = []
    for user, assistant in turns:
        out.append((names[0], user))
        out.append((names[1], assistant))
        if assistant is None:
            break
    return out


def render(mode: str, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The Jinja template rendered with jinja2 (what the engine renders with @huggingface/jinja)."""
    from jinja2 import Environment

    env = Environment()
    return env.from_string(TEMPLATES[mode]).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                    bos_token="", eos_token="")


def pick_conv_mode(cfg: dict, special_tokens: set[str]) -> str:
    """vicuna_v1 for Llama-2/Vicuna checkpoints, llama_3 for Llama-3 ones (its header tokens in the vocabulary),
    chatml_direct for ChatML LLMs (<|im_start|> / <|im_end|> in the vocabulary)."""
    if {"<|im_start|>", "<|im_end|>"} <= special_tokens:
        return "chatml_direct"
    if {"<|start_header_id|>", "<|eot_id|>"} <= special_tokens:
        return "llama_3"
    if cfg.get("vocab_size", 0) >= 128000:
        return "llama_3"
    return "vicuna_v1"
