"""Tiny random checkpoints for tests and benchmarks, built from real configs with no download.

Each builder writes a directory exactly as ``save_pretrained`` does for a real checkpoint (config, safetensors
weights, tokenizer, processor), so tests load it back through the same code path users use. The tokenizer is a
byte-level BPE trained on the fly on vcritic's own prompts, so the answer words are single tokens as in real
vocabularies.
"""

from __future__ import annotations

from pathlib import Path

from vcritic.readout.prompts import QUESTIONS, user_text

FAMILIES = ("llava", "blip2", "instructblip", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "idefics3", "smolvlm")
# Families whose processor needs torchvision.
NEEDS_TORCHVISION = frozenset({"qwen2_5_vl", "qwen2_vl", "qwen3_vl", "qwen3_5", "idefics3", "smolvlm"})

HIDDEN = 32
# The tiny LLaVA of the learning benchmark (benchmarks/learning.py), which the `tiny` training preset is tuned for:
# 32 px pictures in 4 px patches (64 tokens per image) so fine distortions (noise, JPEG) reach the model, and a
# vision tower deeper than the 2-layer test models. ~0.55 M parameters.
LEARNER = dict(hidden=96, layers=2, vision_layers=3, image_size=32, patch_size=4)
SPECIALS = [
    "<pad>", "<s>", "</s>", "<unk>", "<image>",
    "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
# Added (not special) tokens, as in Qwen3.5's vocabulary: kept in decoded text.
THINK_TOKENS = ["<think>", "</think>"]

# A LLaVA-1.5-like template (the real one renders the same structure).
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: {% for item in message['content'] %}{{ item['text'] }}{% endfor %}</s>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen3-VL Instruct's template (the real one also takes system messages, videos and tools; historical answers are
# rendered as their text).
QWEN3_VL_TEMPLATE = QWEN_TEMPLATE
# Qwen3.5 thinks by default: its generation prompt opens a "<think>" block, or, called with enable_thinking=False
# (as vcritic renders every prompt), writes an empty one; earlier answers are rendered without their reasoning.
QWEN3_5_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{% if message['role'] == 'assistant' and '</think>' in item['text'] %}"
    "{{ item['text'].split('</think>')[-1].lstrip('\n') }}{% else %}{{ item['text'] }}{% endif %}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}"
)
# SmolVLM's template (Idefics3 layout: SmolVLM-256M/500M; SmolVLM2 renders the same for images).
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# LLaVA-OneVision's (Qwen2) template: images first in a message, each on its own line.
LLAVA_ONEVISION_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(vocab_size: int = 600):
    """A byte-level BPE tokenizer trained on vcritic's prompts (answer words become single tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = []
    for question in QUESTIONS.values():
        for instruction in question.instructions:
            corpus.append(user_text(question, instruction))
            for word in question.words:
                corpus.append(user_text(question, instruction) + " " + question.answer(word))
    corpus += ["USER: ASSISTANT: Human: Assistant: user assistant image picture photo quality"] * 4
    corpus = corpus * 20
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIALS[4:]})
    fast.add_tokens(THINK_TOKENS)
    return fast


def _llama(tokenizer, **overrides):
    from transformers import LlamaConfig

    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    return LlamaConfig(**{**settings, **overrides})


def _reinit(module, std: float = 0.02) -> None:
    """BLIP's random init leaves the patch embedding and query tokens so small that the model cannot tell images
    apart; real checkpoints are trained, so give them ordinary random values."""
    import torch

    with torch.no_grad():
        for parameter in module.parameters() if hasattr(module, "parameters") else [module]:
            parameter.normal_(0.0, std)


def build_llava(
    directory: Path,
    seed: int = 0,
    *,
    hidden: int = HIDDEN,
    layers: int = 2,
    image_size: int = 32,
    patch_size: int | None = None,
    vision_layers: int | None = None,
) -> Path:
    """LLaVA-1.5 layout: CLIP vision tower + projector + Llama decoder. The size knobs serve the benchmarks.

    ``patch_size`` defaults to 8 up to 64 px and 14 above; ``vision_layers`` to ``layers``."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = train_tokenizer()
    patch = patch_size or (8 if image_size <= 64 else 14)
    vision = CLIPVisionConfig(
        hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=vision_layers or layers,
        num_attention_heads=2,
        image_size=image_size, patch_size=patch, projection_dim=hidden,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision,
        text_config=_llama(tokenizer, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}, do_center_crop=True
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=LLAVA_TEMPLATE,
    )
    return _save(model, processor, directory)


def _build_blip(directory: Path, seed: int, *, instruct: bool) -> Path:
    """BLIP-2 or InstructBLIP (ViT + Q-Former + Llama decoder, the MiniGPT-4 layout of the paper).

    InstructBLIP's Q-Former also reads the instruction, through a tokenizer of its own."""
    import torch
    import transformers as tf

    prefix = "InstructBlip" if instruct else "Blip2"
    torch.manual_seed(seed)
    tokenizer = train_tokenizer()
    qformer_tokenizer = train_tokenizer() if instruct else tokenizer
    config = getattr(tf, f"{prefix}Config")(
        vision_config=getattr(tf, f"{prefix}VisionConfig")(
            hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=8,
        ),
        qformer_config=getattr(tf, f"{prefix}QFormerConfig")(
            hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2, num_attention_heads=2,
            encoder_hidden_size=HIDDEN, vocab_size=len(qformer_tokenizer), pad_token_id=qformer_tokenizer.pad_token_id,
        ),
        text_config=_llama(tokenizer),
        num_query_tokens=4,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )  # fmt: skip
    model = getattr(tf, f"{prefix}ForConditionalGeneration")(config)
    _reinit(model.vision_model.embeddings.patch_embedding)
    _reinit(model.query_tokens)
    tokenizer.image_token = "<image>"
    extra = {"qformer_tokenizer": qformer_tokenizer} if instruct else {}
    processor = getattr(tf, f"{prefix}Processor")(
        image_processor=tf.BlipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        num_query_tokens=4,
        **extra,
    )
    return _save(model, processor, directory)


def build_blip2(directory: Path, seed: int = 0) -> Path:
    return _build_blip(directory, seed, instruct=False)


def build_instructblip(directory: Path, seed: int = 0) -> Path:
    return _build_blip(directory, seed, instruct=True)


def build_qwen2_5_vl(directory: Path, seed: int = 0) -> Path:
    """Qwen2.5-VL layout. Its 56 px windows (2x2 merged tokens) split every image larger than 28 px into windows of
    several sizes, so windowed and full-attention layers both see segments of different lengths."""
    return _build_qwen(directory, seed, "Qwen2_5_VL")


def build_qwen2_vl(directory: Path, seed: int = 0) -> Path:
    """Qwen2-VL layout: the same processor, a vision tower with full attention per image in every layer."""
    return _build_qwen(directory, seed, "Qwen2VL")


def _build_qwen(directory: Path, seed: int, prefix: str) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    tokenizer = train_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    if prefix == "Qwen2VL":
        vision = dict(depth=2, embed_dim=HIDDEN, hidden_size=HIDDEN, mlp_ratio=2, num_heads=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2)  # fmt: skip
    else:
        vision = dict(
            depth=2, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_heads=2, out_hidden_size=HIDDEN,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1],
        )  # fmt: skip
    config = getattr(tf, f"{prefix}Config")(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
        ),
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )  # fmt: skip
    model = getattr(tf, f"{prefix}ForConditionalGeneration")(config)
    # Few image tokens keep the model tiny; the limits still let aspect ratio change the token count, which is
    # what the padding tests need.
    image_processor = tf.Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 84)
    processor = getattr(tf, f"{prefix}Processor")(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=tf.Qwen2VLVideoProcessor(min_pixels=28 * 28, max_pixels=56 * 84),
        chat_template=QWEN_TEMPLATE,
    )
    return _save(model, processor, directory)


def build_qwen3_vl(directory: Path, seed: int = 0) -> Path:
    """Qwen3-VL layout: 16 px patches (32 px per merged token), DeepStack features of a vision layer added to the
    first decoder layers, interleaved 3-D rotary positions."""
    return _build_qwen3(directory, seed, "Qwen3VL")


def build_qwen3_5(directory: Path, seed: int = 0) -> Path:
    """Qwen3.5 layout: the Qwen3-VL vision tower (no DeepStack) and a hybrid text tower, gated-delta-net linear
    attention with full attention every ``full_attention_interval`` layers (here layers 0-2 linear, 3 full), so the
    cache holds recurrent and convolution states beside the key/value pairs."""
    return _build_qwen3(directory, seed, "Qwen3_5")


def _build_qwen3(directory: Path, seed: int, prefix: str) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    tokenizer = train_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    vision = dict(
        depth=2, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_heads=2, out_hidden_size=HIDDEN,
        patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16,
    )  # fmt: skip
    text = dict(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    if prefix == "Qwen3VL":
        vision["deepstack_visual_indexes"] = [0]
        text.update(num_hidden_layers=2, rope_parameters={
            "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True,
        })  # fmt: skip
    else:
        # The real models' 3:1 pattern; partial rotary (a quarter of head_dim: 4 of 16 dims) as in Qwen3.5.
        text.update(
            num_hidden_layers=4, full_attention_interval=4, linear_conv_kernel_dim=4, linear_key_head_dim=8,
            linear_value_head_dim=8, linear_num_key_heads=2, linear_num_value_heads=4,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 0],
                             "mrope_interleaved": True, "partial_rotary_factor": 0.25},
        )  # fmt: skip
    config = getattr(tf, f"{prefix}Config")(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    model = getattr(tf, f"{prefix}ForConditionalGeneration")(config)
    # 32 px per merged token: 1 to 6 image tokens, enough for aspect ratio to change the count.
    pixels = dict(patch_size=16, merge_size=2, size={"shortest_edge": 32 * 32, "longest_edge": 64 * 96})
    processor = tf.Qwen3VLProcessor(
        image_processor=tf.Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=tf.Qwen3VLVideoProcessor(**pixels),
        chat_template=QWEN3_5_TEMPLATE if prefix == "Qwen3_5" else QWEN3_VL_TEMPLATE,
    )
    return _save(model, processor, directory)


def build_idefics3(directory: Path, seed: int = 0) -> Path:
    """Idefics3 layout (SmolVLM-256M/500M/2.2B-Instruct): SigLIP tower, pixel-shuffle connector, Llama decoder; a
    large image is split into tiles plus a global view, each framed by its row/column tokens."""
    return _build_smolvlm(directory, seed, "Idefics3")


def build_smolvlm(directory: Path, seed: int = 0) -> Path:
    """SmolVLM2 layout: Idefics3's, with its own processor (which also reads video)."""
    return _build_smolvlm(directory, seed, "SmolVLM")


def _build_smolvlm(directory: Path, seed: int, prefix: str) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    tokenizer = train_tokenizer()
    tiles = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [*SPECIALS[4:], "<fake_token_around_image>", "<global-img>",
                                       "<end_of_utterance>", *tiles]}
    )  # fmt: skip
    # 32 px tiles of 8 px patches, 2x2 pixel shuffle: 4 tokens per tile; images up to 64 px, at most 2x2 tiles.
    scale = 2
    config = getattr(tf, f"{prefix}Config")(
        vision_config=dict(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
                           num_attention_heads=2, image_size=32, patch_size=8),
        text_config=_llama(tokenizer).to_dict(),
        scale_factor=scale,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
    )  # fmt: skip
    model = getattr(tf, f"{prefix}ForConditionalGeneration")(config)
    images = dict(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True)
    extra = {"video_processor": tf.SmolVLMVideoProcessor(**images)} if prefix == "SmolVLM" else {}
    processor = getattr(tf, f"{prefix}Processor")(
        image_processor=getattr(tf, f"{prefix}ImageProcessor")(**images),
        tokenizer=tokenizer,
        image_seq_len=(32 // 8) ** 2 // scale**2,
        chat_template=SMOLVLM_TEMPLATE,
        **extra,
    )
    return _save(model, processor, directory)


def build_llava_onevision(directory: Path, seed: int = 0) -> Path:
    """LLaVA-OneVision layout (SigLIP, "anyres" tiles picked from grid pinpoints, Qwen2 decoder): a family that vcritic
    has no code of its own for, run through ``AutoModelForImageTextToText`` and its chat template alone."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    tokenizer = train_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    config = tf.LlavaOnevisionConfig(
        vision_config=tf.SiglipVisionConfig(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
                                            num_attention_heads=2, image_size=32, patch_size=8),
        text_config=tf.Qwen2Config(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                                   num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                   pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                   eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False),
        image_token_index=ids("<image>"),
        video_token_index=ids("<|video_pad|>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )  # fmt: skip
    model = tf.LlavaOnevisionForConditionalGeneration(config)
    pixels = dict(size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints)
    processor = tf.LlavaOnevisionProcessor(
        image_processor=tf.LlavaOnevisionImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=tf.LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32}),
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_ONEVISION_TEMPLATE,
        video_token="<|video_pad|>",
    )
    return _save(model, processor, directory)


BUILDERS = {
    "llava": build_llava,
    "blip2": build_blip2,
    "instructblip": build_instructblip,
    "qwen2_5_vl": build_qwen2_5_vl,
    "qwen3_vl": build_qwen3_vl,
    "qwen3_5": build_qwen3_5,
    "idefics3": build_idefics3,
    "smolvlm": build_smolvlm,
    "llava_onevision": build_llava_onevision,  # not in FAMILIES: the family without vcritic code of its own
    "qwen2_vl": build_qwen2_vl,  # not in FAMILIES: only the vision-attention tests use it
}


def build_tiny(family: str, directory: str | Path, seed: int = 0) -> Path:
    """Build the tiny random checkpoint of ``family`` into ``directory`` and return it."""
    return BUILDERS[family](Path(directory), seed=seed)


def _save(model, processor, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    processor.save_pretrained(directory)
    return directory


class SDPACounter:
    """Counts ``torch.nn.functional.scaled_dot_product_attention`` calls made inside ``with`` (a torch function
    mode: the real function still runs), e.g. to prove which attention path a model took."""

    def __init__(self):
        self.calls = 0
        self._mode = None

    def __enter__(self) -> SDPACounter:
        import torch
        from torch.overrides import TorchFunctionMode

        counter, target = self, torch.nn.functional.scaled_dot_product_attention

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func is target:
                    counter.calls += 1
                return func(*args, **(kwargs or {}))

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
