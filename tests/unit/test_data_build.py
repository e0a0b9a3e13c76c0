"""``vcritic data build`` on miniature copies of every dataset: training splits only, balanced, reproducible."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from support.dataset_fixtures import build_all, make_koniq10k, write_image

from vcritic.cli.app import main
from vcritic.data.build import STAGE_DATASETS, BuildOptions, build
from vcritic.data.dialogues import read_dialogues
from vcritic.data.multifunctional import describe, level_word
from vcritic.data.relativity import MIN_GAP, NOISE_FACTOR, min_gap, sample_pairs
from vcritic.datasets import DATASETS, Record, load_dataset, splits
from vcritic.errors import VcriticError
from vcritic.readout.prompts import ATTRIBUTE_QUESTIONS, AUTHENTICITY_QUESTION, COMPARE, QUALITY, QUESTIONS


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("iqa")
    build_all(folder)
    return folder


@pytest.fixture(scope="module")
def records(root) -> dict[str, dict[str, Record]]:
    """dataset -> absolute image path -> record."""
    return {name: {str(r.path.absolute()): r for r in load_dataset(name, root)} for name in DATASETS}


@pytest.fixture(scope="module")
def test_images(root) -> set[str]:
    """Every image of every dataset's test split: the paper's seeded split and KonIQ-10k's official one."""
    found = set()
    for name, spec in DATASETS.items():
        loaded = load_dataset(name, root)
        assignment = splits.assign(loaded, name, by_reference=spec.split_by_reference)
        found |= {str(r.path.absolute()) for r in loaded if assignment[r.image] == "test" or r.official_split == "test"}
    return found


def built(tmp_path: Path, stage: int, root: Path, **kwargs) -> tuple[Path, dict]:
    out = tmp_path / f"stage{stage}"
    record = build(BuildOptions(stage=stage, out=out, root=root, **kwargs))
    return out, record


def dialogues(out: Path, name: str = "dialogues.jsonl"):
    return list(read_dialogues(out / name))


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_no_test_split_image_in_any_built_file(tmp_path, root, test_images, stage):
    out, record = built(tmp_path, stage, root)
    train, val = dialogues(out), dialogues(out, "val.jsonl")
    assert train and val
    used_train = {p for d in train for p in d.images if d.task != "decline"}
    used_val = {p for d in val for p in d.images}
    assert test_images and not (used_train | used_val) & test_images
    assert not used_train & used_val  # val.jsonl holds images that never train
    if stage == 3:  # declines are held out like the other tasks, asked about held-out images
        val_declines = [d for d in val if d.task == "decline"]
        assert val_declines and {p for d in val_declines for p in d.images} <= {
            p for d in val if d.task != "decline" for p in d.images
        }
        trained = sum(d.task == "decline" for d in train)  # the same share of the other dialogues in both files
        expected = round(trained * (len(val) - len(val_declines)) / (len(train) - trained))
        assert len(val_declines) == max(1, expected)
    expected = set(STAGE_DATASETS[1] + STAGE_DATASETS[2]) if stage == 3 else set(STAGE_DATASETS[stage])
    assert {d.dataset for d in train if d.task != "decline"} == expected
    assert record["datasets"] == json.loads((out / "data.json").read_text())["datasets"]


def test_relativity_pairs_are_balanced_ordered_by_mos_and_outside_rating_noise(tmp_path, root, records):
    out, record = built(tmp_path, 1, root, pairs_per_dataset=30)
    train = dialogues(out)
    assert record["counts"]["relativity"] == {n: sum(d.dataset == n for d in train) for n in STAGE_DATASETS[1]}
    for name in STAGE_DATASETS[1]:
        mine = [d for d in train if d.dataset == name]
        assert 2 <= len(mine) <= 30
        firsts = sum(d.answer == COMPARE.answer(" first") for d in mine)
        assert firsts * 2 == len(mine), name
        for d in mine:
            assert d.question == "compare" and d.task == "relativity" and d.instruction in COMPARE.instructions
            a, b = (records[name][p] for p in d.images)
            assert abs(a.mos - b.mos) >= min_gap(a, b)
            assert d.answer == COMPARE.answer(" first" if a.mos > b.mos else " second")
        assert len({frozenset(d.images) for d in mine}) == len(mine)  # no pair twice


def test_noise_threshold_uses_the_rating_spread_where_the_file_has_one(tmp_path):
    def rec(name: str, mos: float, sd: float | None) -> Record:
        return Record(tmp_path / name, mos, "x", name, mos_std=sd)

    assert min_gap(rec("a", 50, None), rec("b", 60, None)) == MIN_GAP
    assert min_gap(rec("a", 50, 15.0), rec("b", 60, 20.0)) == pytest.approx(NOISE_FACTOR * 25.0)
    close, far, other = rec("a", 50, 20.0), rec("b", 55, 20.0), rec("c", 70, 20.0)  # gap needed: 7.07
    image = {r.path: r.image for r in (close, far, other)}
    import random

    pairs = sample_pairs([close, far, other], 10, random.Random(0), image)
    assert {(p.better, p.worse) for p in pairs} == {("c", "a"), ("c", "b")}


def test_loaders_read_the_per_image_rating_spread(root):
    spread = {
        name: sorted({r.mos_std for r in load_dataset(name, root)}) for name in ("koniq10k", "kadid10k", "agiqa3k")
    }
    assert spread["koniq10k"] == pytest.approx([0.6 * 25])  # SD 0.6 on the 1-5 scale
    assert spread["kadid10k"] == pytest.approx([math.sqrt(0.5) * 25])  # var 0.5 on the 1-5 scale
    assert spread["agiqa3k"] == pytest.approx([0.5 * 20])  # std_quality 0.5 on the 0-5 scale
    assert {r.mos_std for r in load_dataset("flive", root)} == {None}


def test_same_seed_gives_byte_identical_files(tmp_path, root):
    def files(name: str, seed: int, stage: int) -> list[bytes]:
        out = tmp_path / name
        build(BuildOptions(stage=stage, out=out, root=root, seed=seed, val_fraction=0.2))
        return [(out / f).read_bytes() for f in ("dialogues.jsonl", "val.jsonl", "data.json")]

    for stage in (1, 2, 3):
        first = files(f"a{stage}", 5, stage)
        assert first == files(f"b{stage}", 5, stage)
        assert files(f"c{stage}", 6, stage)[0] != first[0]


def test_level_binning_is_nearest_level_ties_up():
    assert [level_word(s) for s in (100, 87.5, 87.4, 62.5, 50, 37.5, 12.5, 12.4, 0)] == [
        " excellent", " excellent", " good", " good", " fair", " fair", " poor", " bad", " bad"
    ]  # fmt: skip


def test_stage2_answers_match_the_ground_truth(tmp_path, root, records):
    out, record = built(tmp_path, 2, root)
    train = dialogues(out)
    by_task = {t: [d for d in train if d.task == t] for t in record["counts"]}
    assert set(by_task) == {"quality", "attributes", "authenticity", "description"}
    for d in by_task["quality"]:
        mos = records["koniq10k"][d.images[0]].mos
        assert d.dataset == "koniq10k" and d.instruction in QUALITY.instructions
        assert d.answer == QUALITY.answer(level_word(mos))
    for d in by_task["attributes"]:
        question = ATTRIBUTE_QUESTIONS[d.question]
        value = records["spaq"][d.images[0]].attributes[d.question]
        assert d.answer == question.answer(level_word(value)) and d.instruction in question.instructions
    assert {d.question for d in by_task["attributes"]} == set(ATTRIBUTE_QUESTIONS)
    authenticity = by_task["authenticity"]
    photos = [d for d in authenticity if d.answer == AUTHENTICITY_QUESTION.answer(" photographed")]
    assert len(photos) * 2 == len(authenticity)
    assert {d.dataset for d in photos} == {"koniq10k"}
    assert {d.dataset for d in authenticity if d not in photos} == {"aigciqa2023"}
    for d in by_task["description"]:
        record_ = records[d.dataset][d.images[0]]
        assert (
            d.question == "describe"
            and f"is{level_word(record_.mos)}" in d.answer
            or level_word(record_.mos) in d.answer
        )
    for d in train:
        question = QUESTIONS[d.question]
        assert d.answer.startswith(question.answer_prefix)


def test_descriptions_name_the_best_and_worst_attribute(tmp_path):
    import random

    scores = {"brightness": 90.0, "colorfulness": 60.0, "contrast": 55.0, "noisiness": 20.0, "sharpness": 70.0}
    record = Record(tmp_path / "x.jpg", 70.0, "spaq", "x.jpg", attributes=scores)
    for seed in range(8):
        text = describe(record, random.Random(seed))
        assert " good" in text and "brightness" in text and "noisiness" in text
        assert "excellent" in text and "poor" in text
    even = Record(tmp_path / "y.jpg", 20.0, "spaq", "y.jpg", attributes={k: 50.0 for k in scores})
    assert " poor" in describe(even, random.Random(0)) and "sharpness is" not in describe(even, random.Random(0))


def test_stage3_mixes_built_folders_instruction_data_and_declines(tmp_path, root, sample_images):
    from vcritic.data.synth import synthesize

    synth = tmp_path / "synth"
    folder = tmp_path / "pristine"
    folder.mkdir()
    sample_images["chelsea"].save(folder / "chelsea.png")
    sample_images["coffee"].save(folder / "coffee.png")
    synthesize(folder, synth, size=16, levels=2, kinds=["blur"])
    stage2, _ = built(tmp_path, 2, root)

    images = tmp_path / "coco"
    write_image(images / "a.jpg", 0.9, 1)
    write_image(images / "image" / "7.jpg", 0.9, 2)
    llava = tmp_path / "llava_instruct.json"
    llava.write_text(json.dumps([
        {"image": "a.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"},
                                             {"from": "gpt", "value": "A gradient."},
                                             {"from": "human", "value": "More?"}, {"from": "gpt", "value": "No."}]},
        {"image": "missing.jpg", "conversations": [{"from": "human", "value": "Hi <image>"},
                                                   {"from": "gpt", "value": "Hello."}]},
    ]))  # fmt: skip
    cc_sbu = tmp_path / "cc_sbu_align.json"
    cc_sbu.write_text(json.dumps({"annotations": [{"image_id": "7", "caption": "A colourful square."}]}))

    out = tmp_path / "stage3"
    code = main(["data", "build", "--stage", "3", "--from", f"{synth},{stage2}", "--out", str(out),
                 "--instruct", str(llava), "--instruct-images", str(images), "--instruct", str(cc_sbu),
                 "--instruct-images", str(images), "--samples-per-task", "5", "--declines", "4"])  # fmt: skip
    assert code == 0
    train = dialogues(out)
    counts = json.loads((out / "data.json").read_text())
    assert counts["skipped"] == {"llava_instruct": 1}
    instructions = [d for d in train if d.task == "instruction"]
    assert [(d.instruction, d.answer) for d in instructions][0] == ("What is shown?", "A gradient.")
    assert instructions[1].answer == "A colourful square." and instructions[1].images == (str(images / "image/7.jpg"),)
    declines = [d for d in train if d.task == "decline"]
    assert len(declines) == 4 and all(d.question == "chat" for d in declines)
    sampled = [d for d in train if d.task not in ("instruction", "decline")]
    assert all(n <= 5 for n in counts["counts"]["relativity"].values())
    assert {d.task for d in sampled} == {"relativity", "quality", "attributes", "authenticity", "description"}
    assert all(Path(p).is_absolute() and Path(p).is_file() for d in train for p in d.images)


def test_unreadable_image_is_skipped_and_counted(tmp_path, root, records):
    copy = tmp_path / "iqa"
    make_koniq10k(copy)
    loaded = load_dataset("koniq10k", copy)
    assignment = splits.assign(loaded, "koniq10k")
    victim = next(r for r in loaded if assignment[r.image] == "train" and r.official_split != "test")
    victim.path.write_bytes(b"\xff\xd8 truncated")
    out, record = built(tmp_path, 1, copy)
    assert record["skipped"] == {"koniq10k": 1}
    assert str(victim.path.absolute()) not in {p for d in dialogues(out) for p in d.images}
    for r in loaded:
        r.path.write_bytes(b"")
    with pytest.raises(VcriticError, match="no readable training images"):
        built(tmp_path / "again", 1, copy)


def test_bad_inputs_are_one_line_errors_before_any_work(tmp_path, root, capsys):
    assert main(["data", "build", "--stage", "1", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "no such folder" in capsys.readouterr().err
    partial = tmp_path / "partial"
    make_koniq10k(partial)
    assert main(["data", "build", "--stage", "1", "--root", str(partial), "--datasets", "koniq,spaq",
                 "--out", str(tmp_path / "o")]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "SPAQ not found" in err and "Traceback" not in err
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    assert main(["data", "build", "--stage", "2", "--root", str(root), "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert main(["data", "build", "--stage", "2", "--root", str(root), "--out", str(out), "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert "attributes" in captured.err and "total" in captured.err and captured.out == ""
    # The suggested next command names every option train requires.
    assert "Train with: vcritic train --stage 2 --data" in captured.err
    assert "--model MODEL --output OUT" in " ".join(captured.err.split())
    assert main(["data", "build", "--stage", "3", "--out", str(tmp_path / "s3")]) == 1
    assert "--from" in capsys.readouterr().err
    # Stage 1 with --from: that, not a missing --root, is the mistake to name.
    assert main(["data", "build", "--stage", "1", "--from", str(out), "--out", str(tmp_path / "s1")]) == 2
    assert "are for --stage 3" in capsys.readouterr().err
    # --out that is a --from folder: --overwrite replaced the dialogues it sampled (a synth folder's pairs lost).
    before = (out / "dialogues.jsonl").read_bytes()
    assert main(["data", "build", "--stage", "3", "--from", str(out), "--out", str(out), "--overwrite"]) == 1
    assert "one of the --from folders" in capsys.readouterr().err
    assert (out / "dialogues.jsonl").read_bytes() == before
    # An empty --datasets read as "not given": every dataset.
    assert main(["data", "build", "--stage", "1", "--root", str(root), "--datasets", " , ", "--out",
                 str(tmp_path / "e")]) == 2  # fmt: skip
    assert "--datasets is empty" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_overwrite_of_a_synth_folder_removes_its_images_and_manifest_not_the_users_files(tmp_path, root, sample_images):
    from vcritic.data.synth import synthesize

    sources = tmp_path / "pristine"
    sources.mkdir()
    sample_images["coffee"].save(sources / "coffee.png")
    out = tmp_path / "data"
    synthesize(sources, out, size=16, levels=2, kinds=["blur"])
    (out / "notes.txt").write_text("mine")
    (out / "images" / "my-own.png").write_bytes(b"mine")
    # Was left behind: manifest.csv and its images beside stage-2 dialogues, which `bench DIR/manifest.csv` read.
    record = build(BuildOptions(stage=2, out=out, root=root, overwrite=True))
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert on_disk == ["data.json", "dialogues.jsonl", "images/my-own.png", "notes.txt", "val.jsonl"]
    assert record["removed"] == 1 + 3  # the manifest; pristine, blur 1, blur 2
    assert json.loads((out / "data.json").read_text())["stage"] == 2
    (out / "images" / "my-own.png").unlink()
    synthesize(sources, out, size=16, levels=2, kinds=["blur"], overwrite=True)
    build(BuildOptions(stage=1, out=out, root=root, overwrite=True))
    assert not (out / "images").exists()  # emptied of what vcritic wrote, so removed
