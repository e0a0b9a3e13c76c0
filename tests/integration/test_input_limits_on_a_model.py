"""Bad input on a tiny model: an instruction over the token bound is refused before the model sees it, and an input
that is not an image keeps its error row beside the scored one."""

from __future__ import annotations

import pytest

from vcritic.cli.app import main
from vcritic.errors import VcriticError
from vcritic.readout.prompts import QUALITY


def test_an_instruction_over_the_token_bound_is_refused_before_the_model_sees_it(tiny_llava, monkeypatch):
    from PIL import Image

    from vcritic.data.dialogues import Dialogue
    from vcritic.inference.loading import load_critic
    from vcritic.training import collate

    critic = load_critic(tiny_llava)
    monkeypatch.setattr(collate, "MAX_TEXT_TOKENS", 50)
    long = Dialogue("quality", "quality", ("x.png",), "very " * 60 + "sharp?", QUALITY.answer(" good"))
    with pytest.raises(VcriticError, match=r"'quality' dialogue's instruction is \d+ tokens, over the 50 allowed"):
        collate.encode_dialogue(critic.encoder, long, [Image.new("RGB", (32, 32))])
    short = Dialogue("quality", "quality", ("x.png",), "sharp?", QUALITY.answer(" good"))
    assert collate.encode_dialogue(critic.encoder, short, [Image.new("RGB", (32, 32))])["labels"] is not None


def test_score_with_one_readable_image_keeps_the_error_row_of_the_other(tmp_path, tiny_llava, capsys):
    from PIL import Image

    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    Image.new("RGB", (32, 32), (10, 200, 30)).save(tmp_path / "ok.png")
    out = tmp_path / "s.csv"
    assert main(["score", str(notes), str(tmp_path / "ok.png"), "-m", str(tiny_llava), "-o", str(out)]) == 3
    rows = out.read_text().splitlines()
    assert len(rows) == 3 and "not an image" in rows[1]
