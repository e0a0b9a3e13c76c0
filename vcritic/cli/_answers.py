"""What ``describe`` and ``chat`` print: the model's text as it is generated, and a Score as one line for a person or
as a dict for JSON."""

from __future__ import annotations


def text_streamer(tokenizer):
    """Prints the new text to stdout as tokens arrive (transformers' own streamer), then a newline; a reader that
    leaves (`| head`) ends the run with 141, as for every write to stdout."""
    from transformers import TextStreamer

    from vcritic.cli._output import reader_left

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            try:
                super().on_finalized_text(text, stream_end)
            except BrokenPipeError:
                reader_left()

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def score_dict(score) -> dict:
    """A Score's numbers for JSON output, those that were read out (also ``vcritic chat --json``'s ``score``)."""
    out = {}
    if score.mos is not None:
        out.update(mos=_round(score.mos), mos_std=_round(score.mos_std))
    if score.attributes:
        out["attributes"] = {name: _round(value) for name, value in score.attributes.items()}
    if score.p_ai_generated is not None:
        out["p_ai_generated"] = _round(score.p_ai_generated, 6)
    if score.untrained:  # tasks the judge was never trained for: zero-shot numbers, said so
        out["untrained"] = list(score.untrained)
    return out


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def readout_line(score) -> str:
    """A Score's numbers on one line: "MOS 71.3/100  sharpness 64.0  P(AI-generated) 0.12"."""
    parts = []
    if score.mos is not None:
        parts.append(f"MOS {score.mos:.1f}/100")
    parts += [f"{name} {value:.1f}" for name, value in score.attributes.items()]
    if score.p_ai_generated is not None:
        parts.append(f"P(AI-generated) {score.p_ai_generated:.2f}")
    if score.untrained:
        parts.append(f"(untrained: {', '.join(score.untrained)})")
    return "  ".join(parts)
