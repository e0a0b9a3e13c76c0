"""vcritic.model.compat: every use of library internals falls back to the library's stock path when its capability check
fails (as it would after a release that changed it), says so once on stderr, and the numbers stay the same."""

from __future__ import annotations

import logging

import pytest
from support.families import HAS_TORCHVISION

from vcritic.inference.loading import load_critic
from vcritic.model import compat

# Scores on the 0-100 scale from another order of float32 operations (a cached prefix or not, one attention call
# per segment or per length): equal to float32 rounding, ~1e-6 relative
# (tests/integration/test_multifunctional_readouts.py uses the same).
TOLERANCE = 1e-4
MAX_PIXELS = 112 * 140  # small Qwen images: a few windows of several sizes, fast
needs_torchvision = [  # the Qwen-VL processor needs torchvision
    pytest.mark.needs_torchvision,
    pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision"),
]


@pytest.fixture
def notes(caplog, monkeypatch):
    """The compat notes emitted during the test (each shim notes once per process: the memory is cleared)."""
    monkeypatch.setattr(compat, "_noted", set())
    caplog.set_level(logging.WARNING, logger="vcritic.model.compat")

    def get() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "vcritic.model.compat"]

    return get


@pytest.fixture(scope="module")
def images(sample_images):
    return [sample_images[name].convert("RGB").resize((140, 112)) for name in ("astronaut", "chelsea", "coffee")]


def _scores(critic, images, tasks: str = "all") -> list[float]:
    """Every number of every image (MOS, attributes, P(AI-generated)), flat."""
    scores = critic.score(images, tasks=tasks, batch_size=2)
    return [x for s in scores for x in (s.mos, *s.attributes.values(), s.p_ai_generated) if x is not None]


def _load(tiny_models, family: str):
    return load_critic(tiny_models(family), **({"max_pixels": MAX_PIXELS} if family.startswith("qwen") else {}))


# -- grouped vision attention ------------------------------------------------------------------------------------
@pytest.mark.needs_torchvision
@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
def test_vision_attention_falls_back_to_sdpa_when_the_tower_would_not_pack(tiny_models, images, notes, monkeypatch):
    from vcritic.model.vision_attention import NAME

    grouped = load_critic(tiny_models("qwen2_5_vl"), max_pixels=MAX_PIXELS)
    assert compat.attention_name(grouped.model.config.vision_config) == NAME and notes() == []
    monkeypatch.setattr(compat, "packs_segments", lambda model: False)
    stock = load_critic(tiny_models("qwen2_5_vl"), max_pixels=MAX_PIXELS)
    assert compat.attention_name(stock.model.config.vision_config) == "sdpa"
    assert compat.attention_name(stock.model.config.text_config) == "sdpa"
    assert _scores(stock, images, "mos") == pytest.approx(_scores(grouped, images, "mos"), abs=TOLERANCE)
    assert len(notes()) == 1 and "grouped vision attention does not work" in notes()[0]
    load_critic(tiny_models("qwen2_5_vl"), max_pixels=MAX_PIXELS)
    assert len(notes()) == 1  # once per process


@pytest.mark.needs_torchvision
@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
def test_vision_attention_takes_the_second_route_when_the_first_fails(tiny_models, notes, monkeypatch):
    """set_attn_implementation refused (as transformers 5.25 refuses any "flash" name): the name goes on the vision
    sub-config itself, and the tower still packs."""
    from vcritic.model.vision_attention import NAME

    def refuse(model, implementation):
        raise ValueError("Could not find the currently requested flash attention implementation")

    monkeypatch.setattr(compat, "VISION_ATTENTION_ROUTES", (refuse, compat._through_sub_config))
    critic = load_critic(tiny_models("qwen2_5_vl"), max_pixels=MAX_PIXELS)
    assert compat.attention_name(critic.model.config.vision_config) == NAME
    assert compat.packs_segments(critic.model) and notes() == []


@pytest.mark.needs_torchvision
@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
def test_vision_attention_stays_sdpa_when_the_name_cannot_be_registered(tiny_models, images, notes, monkeypatch):
    import transformers

    grouped = load_critic(tiny_models("qwen2_5_vl"), max_pixels=MAX_PIXELS)

    def refuse(*args, **kwargs):
        raise TypeError("register() changed")

    monkeypatch.setattr(transformers.AttentionInterface, "register", refuse)
    stock = load_critic(tiny_models("qwen2_5_vl"), max_pixels=MAX_PIXELS)
    assert compat.attention_name(stock.model.config.vision_config) == "sdpa"
    assert _scores(stock, images, "mos") == pytest.approx(_scores(grouped, images, "mos"), abs=TOLERANCE)
    assert len(notes()) == 1 and "cannot register" in notes()[0]


# -- shared-prefix cache -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llava", pytest.param("qwen2_5_vl", marks=needs_torchvision)])
def test_without_a_known_cache_argument_every_question_reads_its_whole_prompt(
    tiny_models, images, notes, monkeypatch, family
):
    """The decoder takes no cache argument vcritic knows: scores (several questions per image), describe's text
    and a chat's answers come from full prompts, and equal those of the shared-prefix path."""
    shared = _load(tiny_models, family)
    assert shared.encoder.shared_prefix and notes() == []
    expected = (_scores(shared, images), shared.describe(images[0], max_new_tokens=6).text)
    conversation = shared.chat(images[0], max_new_tokens=5)
    answers = [conversation.ask(q) for q in ("Sharp?", "Colours?")]

    monkeypatch.setattr(compat, "_cache_name", lambda function: None)
    full = _load(tiny_models, family)
    assert not full.encoder.shared_prefix
    assert "full" in full.encoder.encode_questions(list(_questions()), images[0])
    got = (_scores(full, images), full.describe(images[0], max_new_tokens=6).text)
    assert got[0] == pytest.approx(expected[0], abs=TOLERANCE) and got[1] == expected[1]
    conversation = full.chat(images[0], max_new_tokens=5)
    assert [conversation.ask(q) for q in ("Sharp?", "Colours?")] == answers
    assert len(notes()) == 1 and "shared-prefix cache does not work" in notes()[0]


def _questions():
    from vcritic.readout.tasks import parse_tasks, task_questions

    return task_questions(parse_tasks("all"))


@pytest.mark.needs_torchvision
@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
def test_a_qwen_model_without_its_rotary_offset_gets_no_shared_prefix(tiny_models, images, notes):
    """Qwen-VL text after a cached image sits at index + rope_deltas; where the model keeps no such offset the
    suffix positions would be wrong, so the check refuses the shared prefix."""
    critic = load_critic(tiny_models("qwen2_5_vl"), max_pixels=MAX_PIXELS)
    model = critic.base_model()
    critic.score(images[0])
    assert compat.prefix_cache_supported(model) and compat.rope_deltas(model) is not None
    del model.model.rope_deltas
    assert not compat.prefix_cache_supported(model)
    assert compat.rope_deltas(model) is None and "keeps no rope_deltas" in notes()[0]


def test_the_cache_argument_is_one_the_installed_decoder_takes(tiny_llava):
    import inspect

    critic = load_critic(tiny_llava)
    model = critic.base_model()
    decoder = compat.text_decoder(model)
    assert compat.cache_argument(decoder) in inspect.signature(decoder.forward).parameters
    assert compat.generate_cache_argument(model) in inspect.signature(model.prepare_inputs_for_generation).parameters


@pytest.mark.needs_torchvision
@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
def test_a_chat_whose_cache_cannot_be_cropped_reencodes_with_the_same_answers(tiny_models, images, monkeypatch):
    critic = load_critic(tiny_models("qwen2_5_vl"), max_pixels=MAX_PIXELS)
    questions = ("Sharp?", "Colours?", "Better?")
    conversation = critic.chat(images[1], max_new_tokens=5)
    answers = [conversation.ask(q) for q in questions]
    monkeypatch.setattr(compat, "can_crop", lambda cache: False)
    conversation = critic.chat(images[1], max_new_tokens=5)
    assert [conversation.ask(q) for q in questions] == answers


# -- forward arguments -------------------------------------------------------------------------------------------
def test_an_unreadable_forward_signature_leaves_the_optional_arguments_out(tiny_llava, images, notes, monkeypatch):
    """Without logits_to_keep and use_cache the forward computes every position's logits: the same last one."""
    fast = load_critic(tiny_llava)
    assert fast.accepts_logits_to_keep and fast.accepts_use_cache
    comparison = fast.compare(images[0], images[1]).p_a_better
    monkeypatch.setattr(compat, "_parameters", lambda function: None)
    stock = load_critic(tiny_llava)
    assert not stock.accepts_logits_to_keep and not stock.accepts_use_cache
    assert stock.compare(images[0], images[1]).p_a_better == pytest.approx(comparison, abs=1e-6)
    assert _scores(stock, images) == pytest.approx(_scores(fast, images), abs=TOLERANCE)
    assert any("logits_to_keep left out" in line for line in notes())


# -- training ----------------------------------------------------------------------------------------------------
def test_gradient_checkpointing_through_the_older_method_gives_the_same_gradients(tiny_llava, images, monkeypatch):
    import torch
    import transformers

    from vcritic.data.dialogues import Dialogue
    from vcritic.inference.loading import load_model
    from vcritic.readout.prompts import QUALITY
    from vcritic.training.collate import encode_dialogue
    from vcritic.training.trainable import answer_loss

    encoder = load_critic(tiny_llava).encoder
    answers = [QUALITY.answer(word) for word in ("bad", "good", "fair")]
    dialogues = [Dialogue("quality", "quality", ("x",), QUALITY.instruction, answer) for answer in answers]
    batch = encoder.collate([encode_dialogue(encoder, d, [i]) for d, i in zip(dialogues, images, strict=True)])

    def gradients(checkpointing: bool):
        net = load_model(tiny_llava, dtype=torch.float32).model
        net.train()
        if checkpointing:
            compat.enable_gradient_checkpointing(net, use_reentrant=False)
            assert net.is_gradient_checkpointing
        answer_loss(net, dict(batch), torch.float32).backward()
        return {name: p.grad for name, p in net.named_parameters() if p.grad is not None}

    plain = gradients(False)
    assert plain
    called = []
    monkeypatch.setattr(compat, "has_activation_checkpointing", lambda net: False)
    monkeypatch.setattr(
        transformers.PreTrainedModel,
        "gradient_checkpointing_enable",
        lambda self, *args, _stock=transformers.PreTrainedModel.gradient_checkpointing_enable, **kwargs: (
            called.append(kwargs),
            _stock(self, *args, **kwargs),
        ),
    )
    older = gradients(True)
    assert called == [{"gradient_checkpointing_kwargs": {"use_reentrant": False}}]
    assert older.keys() == plain.keys()
    for name, grad in older.items():
        torch.testing.assert_close(grad, plain[name], rtol=0, atol=1e-6, msg=name)


def test_accelerator_is_made_where_accelerate_has_no_state_to_reset(notes, monkeypatch):
    import torch
    from accelerate.state import AcceleratorState

    from vcritic.training.prepare import accelerator_on as _accelerator

    assert _accelerator(torch.device("cpu")).device == torch.device("cpu") and notes() == []
    monkeypatch.delattr(AcceleratorState, "_reset_state")
    assert _accelerator(torch.device("cpu")).device == torch.device("cpu")
    assert len(notes()) == 1 and "cannot reset accelerate" in notes()[0]


def test_compat_is_the_only_module_that_reaches_into_library_internals():
    """The private names compat wraps appear nowhere else in vcritic."""
    from pathlib import Path

    import vcritic

    private = (
        "._attn_implementation",
        "._shared_state",
        "._reset_state",
        ".rope_deltas",
        "inspect.signature",
        "._reconstruct",
    )
    root = Path(vcritic.__file__).parent
    # The CLI reads the signatures of vcritic's own commands (cli/_options.model_options), not a library's.
    own_signatures = {root / "cli" / "_options.py": "inspect.signature"}
    offenders = [
        f"{path.relative_to(root)}: {name}"
        for path in root.rglob("*.py")
        if path.name != "compat.py"
        for name in private
        if name in path.read_text(encoding="utf-8") and own_signatures.get(path) != name
    ]
    assert offenders == []


def test_without_numpys_array_rebuilder_an_rng_state_is_refused_not_unpickled_freely(monkeypatch, tmp_path):
    """The restricted unpickler's allowlist names numpy's private rebuilder through compat: where numpy has none, the
    allowlist keeps only the types (one note), and a pickled array is refused as untrusted, never loaded unchecked."""
    import pickle

    import numpy as np
    import torch

    from vcritic.model import compat

    with_rebuilder = compat.numpy_array_unpickling()
    assert np._core.multiarray._reconstruct in with_rebuilder and np.ndarray in with_rebuilder
    path = tmp_path / "random_states_0.pkl"
    torch.save({"numpy": np.arange(3, dtype=np.uint32)}, path)
    with torch.serialization.safe_globals(with_rebuilder):
        assert torch.load(path, weights_only=True)["numpy"].tolist() == [0, 1, 2]

    monkeypatch.delattr(np._core.multiarray, "_reconstruct")
    monkeypatch.setattr(compat, "_noted", set())
    without = compat.numpy_array_unpickling()
    assert np.ndarray in without and not any(callable(a) and not isinstance(a, type) for a in without)
    monkeypatch.undo()  # the rebuilder back, so torch could unpickle: only the allowlist refuses
    with torch.serialization.safe_globals(without), pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
