"""vcritic chat and Critic.chat: the history kept in the chat template, token for token; the image encoded once; the
answers those of a plain generate over the whole history; the command line's errors (the command line end to end:
tests/e2e/test_chat_cli.py)."""

from __future__ import annotations

import pytest
from PIL import Image
from support.families import family_params

from vcritic.cli.app import main
from vcritic.errors import VcriticError
from vcritic.inference.chat import Conversation
from vcritic.inference.loading import load_critic
from vcritic.model.resolution import visual_tokens
from vcritic.readout.prompts import CHAT

QUESTIONS = ("Is this photo sharp?", "And how are the colours?", "What would make it better?")


class VisionCalls:
    """Counts forward calls of the model's vision tower: one per image encoding."""

    def __init__(self, critic):
        model = critic.base_model()
        name = next(
            n for n, _ in model.named_modules() if n.rpartition(".")[2] in ("vision_tower", "vision_model", "visual")
        )
        self.count = 0
        self.handle = model.get_submodule(name).register_forward_hook(self._called)

    def _called(self, *_):
        self.count += 1

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


class SeenTokens:
    """The token sequence the model holds in context, rebuilt from its forward calls: each call's input ids go at
    the position its KV cache has reached (a cropped cache overwrites what followed)."""

    def __init__(self, critic):
        self.ids: list[int] = []
        self.handle = critic.base_model().register_forward_pre_hook(self._forward, with_kwargs=True)

    def _forward(self, module, args, kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        start = cache.get_seq_length() if cache is not None else 0
        self.ids = self.ids[:start] + kwargs["input_ids"][0].tolist()


def _template_ids(critic, image, exchanges, question) -> list[int]:
    """The processor's own rendering of the whole history with the image, tokenised: what the model must read."""
    messages = []
    for i, (asked, answer) in enumerate([*exchanges, (question, None)]):
        content = [{"type": "image", "image": image}] if i == 0 else []
        messages.append({"role": "user", "content": [*content, {"type": "text", "text": asked}]})
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    encoded = critic.processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    return encoded["input_ids"][0].tolist()


def _plain_answer(critic, conversation: Conversation, question: str) -> str:
    """The answer of one plain ``generate`` over the whole prompt with the image (no cache carried over)."""
    inputs = critic.processor(images=[conversation.image], text=[conversation.prompt(question)], return_tensors="pt")
    return critic.decode_text(critic.model, critic.to_device(dict(inputs)), max_new_tokens=conversation.max_new_tokens)


@pytest.mark.parametrize("family", family_params(("llava", "qwen2_5_vl")))
def test_each_turn_reads_the_whole_history_as_the_chat_template_renders_it(critics, family, sample_images):
    critic = critics(family)
    seen, calls = SeenTokens(critic), VisionCalls(critic)
    try:
        conversation = critic.chat(sample_images["chelsea"], max_new_tokens=8)
        for turn, question in enumerate(QUESTIONS):
            expected = _template_ids(critic, conversation.image, conversation.exchanges, question)
            answer = conversation.ask(question)
            # The prompt is the template's rendering of every earlier exchange (LLaVA's prompt then has the space
            # after "ASSISTANT:" that every vcritic prompt puts before an answer).
            assert seen.ids[: len(expected)] == expected, f"turn {turn + 1}"
            assert conversation.exchanges[-1] == (question, answer)
        assert calls.take() == 1  # the image was encoded once for all three turns
    finally:
        seen.handle.remove()
        calls.handle.remove()

    again = critic.chat(sample_images["chelsea"], max_new_tokens=8)
    assert [again.ask(q) for q in QUESTIONS] == [a for _, a in conversation.exchanges]  # greedy: deterministic
    assert len({a for _, a in conversation.exchanges}) > 1  # the answers did follow the history


@pytest.mark.parametrize("family", family_params())
def test_answers_equal_a_plain_generate_over_the_whole_history(critics, family, sample_images):
    """The cache carried from turn to turn changes nothing: each answer is what generate writes from the full
    prompt. InstructBLIP (no cache to continue from) encodes the image on every turn, the others once."""
    critic = critics(family)
    calls = VisionCalls(critic)
    try:
        conversation = critic.chat(sample_images["rocket"], max_new_tokens=10)
        assert conversation.prompt(QUESTIONS[0]) == critic.encoder.prompt(CHAT, QUESTIONS[0])  # stage 3's prompt
        answers = [conversation.ask(q) for q in QUESTIONS]
        assert calls.take() == (3 if family == "instructblip" else 1)
        replay = critic.chat(sample_images["rocket"], max_new_tokens=10)
        for question, answer in zip(QUESTIONS, answers, strict=True):
            assert _plain_answer(critic, replay, question) == answer
            replay.exchanges.append((question, answer))
    finally:
        calls.handle.remove()


def test_the_vicuna_format_carries_the_history_for_models_without_a_template(critics):
    critic = critics("blip2")
    conversation = critic.chat(Image.new("RGB", (64, 48), (120, 120, 120)), max_new_tokens=4)
    conversation.exchanges.append(("Is it sharp?", "Fairly."))
    expected = "Human: <img1></img1>Is it sharp? Assistant: Fairly.</s>Human: Why? Assistant: "
    assert conversation.prompt("Why?") == expected


def test_reset_forgets_the_history_but_keeps_the_image_encoded(critics, sample_images):
    critic = critics("llava")
    calls = VisionCalls(critic)
    try:
        conversation = critic.chat(sample_images["coffee"], max_new_tokens=8)
        first = conversation.ask(QUESTIONS[0])
        conversation.ask(QUESTIONS[1])
        conversation.reset()
        assert conversation.exchanges == []
        assert conversation.ask(QUESTIONS[0]) == first
        assert calls.take() == 1
    finally:
        calls.handle.remove()


@pytest.mark.needs_torchvision
@pytest.mark.parametrize("family", family_params(("qwen2_5_vl", "qwen3_vl", "qwen3_5")))
def test_qwen_conversations_keep_their_own_rotary_offset_between_other_images(critics, family, sample_images):
    """Qwen2.5-VL keeps an image's rotary offset on the model; scoring another image, or another conversation's
    turn, replaces it. Interleaved, a conversation's next turn computes exactly what it computes alone (the tiny
    model's greedy text hardly moves with a wrong offset, so the logits are compared)."""
    import torch

    critic = critics(family)
    logits = []
    hook = critic.base_model().register_forward_hook(lambda m, a, out: logits.append(out.logits[0, -1].clone()))

    def second_turn(interleaved: bool) -> torch.Tensor:
        chelsea = critic.chat(sample_images["chelsea"], max_new_tokens=3)
        chelsea.ask(QUESTIONS[0])
        if interleaved:
            critic.chat(sample_images["rocket"], max_new_tokens=3).ask(QUESTIONS[0])  # another size, offset
            critic.score(sample_images["astronaut"])
        logits.clear()
        chelsea.ask(QUESTIONS[1])
        return torch.stack(logits)

    try:
        alone, interleaved = second_turn(False), second_turn(True)
    finally:
        hook.remove()
    assert alone.shape == interleaved.shape and float((alone - interleaved).abs().max()) < 1e-6


@pytest.mark.needs_torchvision
@pytest.mark.parametrize("family", family_params(("qwen2_5_vl",)))
def test_the_resolution_options_apply_to_the_conversation_image(tiny_models, family, sample_images):
    critic = load_critic(str(tiny_models(family)), device="cpu", image_size=56)
    seen = SeenTokens(critic)
    conversation = critic.chat(sample_images["rocket"], max_new_tokens=2)
    conversation.ask(QUESTIONS[0])
    assert conversation.image.size == (56, 56)
    assert seen.ids.count(critic.processor.image_token_id) == visual_tokens(critic.processor, 56, 56)


def test_sampling_follows_the_seed_and_greedy_is_the_default(critics, sample_images):
    import torch

    critic = critics("llava")
    greedy = critic.chat(sample_images["chelsea"], max_new_tokens=12).ask(QUESTIONS[0])
    sampled = []
    for _ in range(2):
        torch.manual_seed(7)
        sampled.append(critic.chat(sample_images["chelsea"], max_new_tokens=12, temperature=5.0).ask(QUESTIONS[0]))
    assert sampled[0] == sampled[1] and sampled[0] != greedy


def test_bad_questions_and_settings_are_refused(critics, sample_images, tmp_path):
    critic = critics("llava")
    with pytest.raises(VcriticError, match="the question is empty"):
        critic.chat(sample_images["chelsea"]).ask("  ")
    with pytest.raises(VcriticError, match="temperature must be above 0"):
        critic.chat(sample_images["chelsea"], temperature=0)
    with pytest.raises(VcriticError, match=r"cannot use .*missing\.png: file not found"):
        critic.chat(tmp_path / "missing.png")


# -- command line ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cat_png(tmp_path_factory, sample_images):
    path = tmp_path_factory.mktemp("chat") / "cat.png"
    sample_images["chelsea"].save(path)
    return path


def test_command_line_errors_are_one_line_before_any_model_load(tmp_path, tiny_llava, cat_png, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    cases = [
        (["chat", str(broken), "-m", str(tmp_path / "no-model")], f"Error: cannot use {broken}: not an image"),
        (["chat", str(tmp_path / "gone.png"), "-m", str(tiny_llava)], "Error: cannot use"),
        (["chat", str(cat_png), "-m", str(tmp_path / "no-model"), "-a", "hi"], "Error: "),
    ]
    for args, start in cases:
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith(start) and len(err.splitlines()) <= 2 and "Traceback" not in err, err
    assert main(["chat", str(cat_png), "--temperature", "0", "-a", "hi"]) == 2
    assert "not above 0" in capsys.readouterr().err
