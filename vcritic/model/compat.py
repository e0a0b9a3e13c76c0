"""The only module that touches library internals (transformers, accelerate, peft): private attributes, argument
names that moved between releases, and behaviour that a library shows but does not promise.

Each use sits behind a capability check. Where the check fails (a release changed what vcritic relies on), vcritic
takes the library's stock path, which gives the same numbers, at worst more slowly, and says so once on stderr
(logger ``vcritic.model.compat``). A new release can cost a speed-up but cannot stop a model from loading or scoring.
A method or argument that a release renamed is called by the name the installed release has, without a note: that
is the same call. tests/integration/test_compat.py forces every fallback and checks that the scores stay the same.

- Grouped vision attention (:func:`set_vision_attention`): Qwen2-VL/2.5-VL's vision towers hand the packed sequence
  to the attention function in one call only for a name that transformers takes for flash attention.
- Shared-prefix KV cache (:func:`prefix_cache_supported` and the helpers below it): the cache on a forward's output,
  the decoder's cache argument (``cache`` since 5.x, ``past_key_values`` before), Qwen-VL's rotary offset
  (``rope_deltas``) kept on the model, ``generate`` continuing from a filled cache, cropping a cache and whether
  cropping gives the prefix cache back (:func:`crop_restores`).
- Forward arguments (:func:`takes_argument`): ``logits_to_keep`` and ``use_cache`` where a model's forward has them.
- Gradient checkpointing (:func:`enable_gradient_checkpointing`): its method was renamed in transformers 5.x.
- accelerate's per-process state (:func:`reset_accelerate_state`): reset so that a second run in one process can
  use another device.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

log = logging.getLogger("vcritic.model.compat")
_noted: set[str] = set()

# The decoder's KV-cache argument: the 5.x name first (the old one warns, then goes in 5.40).
CACHE_ARGUMENTS = ("cache", "past_key_values")


def note(key: str, message: str) -> None:
    """One line on stderr, once per process and ``key``: vcritic took a library's stock path."""
    if key not in _noted:
        _noted.add(key)
        log.warning("vcritic: %s", message)


def _library_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return name


# -- attention ---------------------------------------------------------------------------------------------------
def attention_name(config) -> str | None:
    """The attention implementation a (sub-)config asks for."""
    return getattr(config, "_attn_implementation", None)


def packs_segments(model) -> bool:
    """Whether the Qwen2-VL/2.5-VL vision tower of ``model`` hands its attention function the packed sequence with
    ``cu_seqlens`` in one call for the implementation its vision config names. The tower decides with
    ``is_flash_attention_requested``, the one its modeling module imported, which is asked here; vcritic's grouped
    attention relies on it, under a name that contains "flash" (:data:`vcritic.model.vision_attention.NAME`)."""
    import sys

    module = sys.modules.get(type(model).__module__)
    decides = getattr(module, "is_flash_attention_requested", None)
    if decides is None:
        try:
            from transformers.utils.generic import is_flash_attention_requested as decides
        except ImportError:
            return False
    try:
        return bool(decides(model.config.vision_config))
    except (TypeError, ValueError, AttributeError):
        return False


def register_attention(name: str, function) -> bool:
    """Make ``name`` a valid ``attn_implementation`` through transformers' ``AttentionInterface`` (idempotent);
    False, with a note, where this release cannot (the model then keeps stock attention)."""
    try:
        from transformers import AttentionInterface

        AttentionInterface.register(name, function)
    except (ImportError, AttributeError, TypeError, ValueError) as err:
        note(
            f"register-{name}",
            f"cannot register the {name} attention with {_library_version('transformers')} ({err}); stock sdpa is "
            "used (same scores, slower)",
        )
        return False
    return True


def _through_set_attn_implementation(model, implementation: str) -> None:
    # Through the sub-config dict: the tower's own check accepts any registered name, while a top-level "flash" name
    # would send transformers looking for a hub kernel (5.5.4 to 5.24).
    model.set_attn_implementation({"vision_config": implementation})


def _through_sub_config(model, implementation: str) -> None:
    # transformers 5.25 looks for a hub kernel for any "flash" name, sub-configs included: the name set on the vision
    # sub-config itself, which the tower reads at every forward (ALL_ATTENTION_FUNCTIONS lookup).
    model.config.vision_config._attn_implementation = implementation


VISION_ATTENTION_ROUTES = (_through_set_attn_implementation, _through_sub_config)


def set_vision_attention(model, implementation: str, *, packed: bool) -> str:
    """Set ``implementation`` on the vision sub-config of ``model`` (the language model keeps its own); returns the
    implementation in effect. ``packed``: it needs the packed sequence in one call (:func:`packs_segments`). Where no
    route sets it, or the tower would not pack for it, the tower keeps or gets stock ``sdpa``, which computes the
    same attention one segment at a time, and a note says so."""
    vision = model.config.vision_config
    for route in VISION_ATTENTION_ROUTES:
        try:
            route(model, implementation)
        except (ValueError, ImportError, OSError, AttributeError, TypeError, KeyError):
            continue
        vision = model.config.vision_config
        if attention_name(vision) == implementation and (not packed or packs_segments(model)):
            return implementation
    if implementation == "sdpa":
        raise RuntimeError(f"cannot set sdpa attention on the vision tower with {_library_version('transformers')}")
    note(
        "vision-attention",
        f"the grouped vision attention does not work with {_library_version('transformers')}; the vision tower uses "
        "sdpa (same scores, more attention calls per image)",
    )
    return set_vision_attention(model, "sdpa", packed=False)


# -- forward arguments -------------------------------------------------------------------------------------------
def _parameters(function) -> dict[str, inspect.Parameter] | None:
    try:
        return dict(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return None


def takes_argument(function, name: str, *, any_keyword: bool = False) -> bool:
    """Whether ``function`` (a library method) takes ``name``; with ``any_keyword``, a ``**kwargs`` counts. Where
    its signature cannot be read, False: the argument is left out and the library's default used (a note says so)."""
    parameters = _parameters(function)
    if parameters is None:
        note(
            f"signature-{name}",
            f"cannot read the signature of {getattr(function, '__qualname__', function)}: {name} left out",
        )
        return False
    return name in parameters or (
        any_keyword and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    )


# -- KV cache ----------------------------------------------------------------------------------------------------
def find_cache(out):
    """The KV cache of a forward pass; BLIP-2 keeps it on the language model's own output."""
    sources = [out, getattr(out, "language_model_outputs", None)]
    # transformers renamed past_key_values to cache in 5.x; the old name warns, so it is tried last.
    for name in CACHE_ARGUMENTS:
        for source in sources:
            cache = getattr(source, name, None) if source is not None else None
            if cache is not None:
                return cache
    raise RuntimeError(f"{type(out).__name__} returned no KV cache")


def text_decoder(model):
    """The language model without its head (BLIP-2's ``get_decoder`` is a whole causal LM)."""
    decoder = model.get_decoder()
    while decoder.get_output_embeddings() is not None and decoder.get_decoder() is not decoder:
        decoder = decoder.get_decoder()
    return decoder


def _cache_name(function) -> str | None:
    parameters = _parameters(function)
    return next((name for name in CACHE_ARGUMENTS if parameters is not None and name in parameters), None)


def cache_argument(decoder) -> str:
    """The name under which ``decoder``'s forward takes a KV cache (``cache`` in 5.x, ``past_key_values`` before)."""
    return _cache_name(decoder.forward) or "past_key_values"


def generate_cache_argument(model) -> str:
    """The name under which ``generate`` takes a filled cache: the one ``prepare_inputs_for_generation`` has."""
    return _cache_name(model.prepare_inputs_for_generation) or "past_key_values"


def _rope_module(model):
    """The module of a Qwen-VL-style model that computes multimodal rotary positions (``get_rope_index``), or None."""
    inner = getattr(model, "model", None)
    return inner if hasattr(inner, "get_rope_index") else None


def rope_deltas(model):
    """Qwen2-VL/2.5-VL's multimodal rotary offset of the last image the model read (text after the image sits at
    ``index + rope_delta``), kept on the model by its forward; None for a model without one."""
    module = _rope_module(model)
    return getattr(module, "rope_deltas", None) if module is not None else None


def set_rope_deltas(model, deltas) -> None:
    """Put back the offset of an image read earlier (any other image read since replaced it)."""
    module = _rope_module(model)
    if module is not None:
        module.rope_deltas = deltas


def prefix_cache_supported(model) -> bool:
    """Whether vcritic can run a prompt's shared prefix once and continue each question from its KV cache with this
    model and release: the text decoder is found, it takes a cache argument, and a model with multimodal rotary
    positions keeps its offset where vcritic reads it. Otherwise every question reads its whole prompt, the stock
    path (same scores, the image encoded once per question), and a note says so."""
    problem = None
    try:
        decoder = text_decoder(model)
    except (AttributeError, NotImplementedError, TypeError) as err:
        problem = f"no text decoder ({err})"
    else:
        if _cache_name(decoder.forward) is None:
            problem = f"{type(decoder).__name__}.forward takes none of {', '.join(CACHE_ARGUMENTS)}"
        elif _rope_module(model) is not None and not hasattr(_rope_module(model), "rope_deltas"):
            problem = f"{type(model).__name__} keeps no rope_deltas"
    if problem is None:
        return True
    note(
        "prefix-cache",
        f"the shared-prefix cache does not work with {_library_version('transformers')} ({problem}); every question "
        "reads its whole prompt (same scores, slower)",
    )
    return False


def generates_from_cache(model) -> bool:
    """Whether ``model.generate`` is transformers' own, which, given a whole prompt and a filled cache, runs only the
    tokens the cache lacks. Models that override it (BLIP-2, InstructBLIP, ...) may run their vision tower again."""
    from transformers import GenerationMixin

    return (
        getattr(type(model), "generate", None) is GenerationMixin.generate
        and _cache_name(model.prepare_inputs_for_generation) in CACHE_ARGUMENTS
    )


def can_crop(cache) -> bool:
    """Whether ``cache`` can drop its last tokens (:func:`crop_cache`)."""
    return hasattr(cache, "crop") and hasattr(cache, "get_seq_length")


def crop_cache(cache, keep: int) -> None:
    """Keep the first ``keep`` tokens of ``cache``."""
    surplus = cache.get_seq_length() - keep
    if surplus:  # a negative count: what current transformers takes, and older 5.x reads as "this many"
        cache.crop(-surplus)


def cache_length(cache) -> int:
    """How many tokens ``cache`` holds (the prefix, right after its forward)."""
    return int(cache.get_seq_length())


# Layer kinds (a text config's ``layer_types``) whose cache keeps one entry per token, so that a cache can be cut
# back to a prefix; the others (linear attention, Mamba, convolution) keep one state for the whole past.
PER_TOKEN_LAYERS = frozenset({"full_attention", "sliding_attention", "chunked_attention"})


def _layer_kinds(model) -> set[str]:
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return set(getattr(text, "layer_types", None) or ())


def per_token_cache(model) -> bool:
    """Whether ``model``'s KV cache keeps one entry per token in every layer: not where its text tower has recurrent
    layers (Qwen3.5's gated delta net), whose state cannot be cut back to a prefix."""
    return _layer_kinds(model) <= PER_TOKEN_LAYERS


def crop_restores(model, cache) -> bool:
    """Whether cropping ``cache`` back to its prefix after a read gives back exactly the prefix cache: every layer
    keeps every token, so no recurrent state (:func:`per_token_cache`) and no sliding window (which drops its oldest
    tokens once full), and the cache can be cropped (:func:`can_crop`). Where not, a read continues from a copy."""
    return (
        _layer_kinds(model) <= {"full_attention"}
        and can_crop(cache)
        and not any(getattr(layer, "is_sliding", False) for layer in getattr(cache, "layers", ()))
    )


# -- training ----------------------------------------------------------------------------------------------------
def has_activation_checkpointing(net) -> bool:
    return hasattr(net, "activation_checkpointing_enable")


def enable_gradient_checkpointing(net, **kwargs: Any) -> None:
    """Gradient checkpointing with ``kwargs`` (e.g. ``use_reentrant=False``): ``activation_checkpointing_enable``
    in the 5.x releases that have it, else the older ``gradient_checkpointing_enable`` (same effect)."""
    if has_activation_checkpointing(net):
        net.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def reset_accelerate_state(device) -> None:
    """Forget accelerate's process state when an earlier single-process run here (a notebook, tests) used another
    device: accelerate keeps one state per Python process, which would otherwise decide where this run trains. One
    process has no process group to tear down. Where accelerate has no such state to reset, nothing is reset (a
    note says so): a run then trains where the process's first run did."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    shared = getattr(PartialState, "_shared_state", None)
    if not isinstance(shared, dict) or not hasattr(AcceleratorState, "_reset_state"):
        note(
            "accelerate-state",
            f"cannot reset {_library_version('accelerate')}'s process state: a second run in this process trains "
            "on the device of the first",
        )
        return
    if shared and shared.get("device") != device and shared.get("distributed_type") == DistributedType.NO:
        AcceleratorState._reset_state(reset_partial_state=True)


def numpy_array_unpickling() -> list:
    """What torch's restricted unpickler must allow to read a numpy array (the RNG states accelerate saves): the array
    and dtype types and numpy's private array rebuilder, which pickles name as ``numpy._core.multiarray._reconstruct``
    (``numpy.core`` before numpy 2). Without that function (a numpy that rebuilds arrays otherwise) only the types are
    allowed, and a pickle that needs more is refused as untrusted: safe, never silently widened."""
    import numpy as np

    allowed = [np.ndarray, np.dtype]
    allowed += [type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64)]
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    rebuild = getattr(getattr(core, "multiarray", None), "_reconstruct", None)
    if rebuild is None:
        note("numpy-reconstruct", f"numpy {np.__version__} has no multiarray._reconstruct: RNG states may be refused")
    else:
        allowed.append(rebuild)
    return allowed
