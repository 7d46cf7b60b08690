"""The Jinja chat templates render what the reference's conversation templates build (python -m pytest models/tests)."""

import pytest

from loupe_dc.templates import CONV_MODES, SYSTEM_PROMPTS, reference_prompt, render

TURNS = [
    [("<image>\nWhat is in the image?", None)],
    [("<image>\nWhat is in the image?", "A red circle."), ("What color is it?", None)],
    [("<image>\nQ1", "A1"), ("Q2", "A2"), ("Q3", None)],
]


def messages(turns):
    out = []
    for user, assistant in turns:
        out.append({"role": "user", "content": user})
        if assistant is not None:
            out.append({"role": "assistant", "content": assistant})
    return out


@pytest.mark.parametrize("mode", CONV_MODES)
@pytest.mark.parametrize("turns", TURNS)
def test_template_matches_reference(mode, turns):
    expected = reference_prompt(mode, turns)
    assert render(mode, messages(turns)) == expected
    assert render(mode, [{"role": "system", "content": SYSTEM_PROMPTS[mode]}, *messages(turns)]) == expected


def test_literal_prompts():
    assert reference_prompt("vicuna_v1", TURNS[0]) == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: <image>\nWhat is in the image? ASSISTANT:")
    assert reference_prompt("llama_3", TURNS[0]) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful language and vision assistant. "
        "You are able to understand the visual content that the user provides, and assist the user with a variety of "
        "tasks using natural language.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat is in the "
        "image?<|eot_id|><|start_header_id|>system<|end_header_id|>\n\n")
    # the reference's MPT separator style: no newline after <|im_end|>, unlike the LLMs' own ChatML
    assert reference_prompt("chatml_direct", TURNS[1]) == (
        "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n<image>\nWhat is in the image?<|im_end|>"
        "<|im_start|>assistant\nA red circle.<|im_end|><|im_start|>user\nWhat color is it?<|im_end|><|im_start|>assistant\n")


def test_follow_up_extends_the_first_turn():
    for mode in CONV_MODES:
        first = render(mode, messages([("<image>\nQ", "A")]), add_generation_prompt=False)
        assert render(mode, messages([("<image>\nQ", "A"), ("Q2", None)])).startswith(first)
