"""Dataset loaders on miniature copies in the official layouts, the registry, manifests and splits."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from support.dataset_fixtures import (
    build_all,
    make_agiqa3k,
    make_aigciqa2023,
    make_cgiqa6k,
    make_kadid10k,
    make_koniq10k,
    make_livec,
    make_spaq,
)

from vcritic.datasets import DATASETS, Record, find_datasets, get_dataset, load_dataset, load_manifest, splits
from vcritic.errors import VcriticError


@pytest.fixture(scope="module")
def all_datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("iqa")
    return root, build_all(root)


def by_image(records: list[Record]) -> dict[str, Record]:
    return {r.image: r for r in records}


# The documented raw range of each dataset (what maps to 0 and to 100), and whether it is AI-generated.
EXPECTED = {
    "koniq10k": ((1, 5), False),
    "spaq": ((0, 100), False),
    "flive": ((0, 100), False),
    "livec": ((0, 100), False),
    "cgiqa6k": ((0, 5), True),
    "kadid10k": ((1, 5), False),
    "agiqa3k": ((0, 5), True),
    "aigciqa2023": ((0, 100), True),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_loader_reads_official_layout_and_normalises_mos(all_datasets, name):
    root, fixtures = all_datasets
    records = load_dataset(name, root)
    fixture = fixtures[name]
    (low, high), ai = EXPECTED[name]
    assert sorted(r.image for r in records) == sorted(fixture.raw)
    for record in records:
        assert record.dataset == name
        assert record.path.is_file(), record.path
        assert record.mos == pytest.approx((fixture.raw[record.image] - low) * 100 / (high - low))
        assert 0 <= record.mos <= 100
        assert record.ai_generated is ai
    assert DATASETS[name].mos_range == (low, high)


def test_find_datasets_under_conventional_and_authors_folder_names(all_datasets):
    root, _ = all_datasets
    found = find_datasets(root)
    assert set(found) == set(DATASETS)
    assert found["livec"].name == "ChallengeDB_release"
    assert found["aigciqa2023"].name == "AIGCIQA2023"
    # the dataset folder itself works as --root too
    assert len(load_dataset("koniq10k", found["koniq10k"])) == 12


def test_koniq_official_split_and_sets_file_alone(tmp_path):
    fixture = make_koniq10k(tmp_path)
    records = by_image(load_dataset("koniq10k", tmp_path))
    names = {"training": "train", "validation": "val", "test": "test"}
    assert {k: r.official_split for k, r in records.items()} == {k: names[v] for k, v in fixture.extra["sets"].items()}

    (fixture.folder / "koniq10k_scores_and_distributions.csv").unlink()  # the sets file alone: MOS already 0-100
    alone = by_image(load_dataset("koniq10k", tmp_path))
    for name, raw in fixture.raw.items():
        assert alone[name].mos == pytest.approx((raw - 1) * 25)


def test_koniq_smaller_image_folder(tmp_path):
    fixture = make_koniq10k(tmp_path, n=3)
    (fixture.folder / "1024x768").rename(fixture.folder / "512x384")
    assert all(r.path.parent.name == "512x384" and r.path.is_file() for r in load_dataset("koniq", tmp_path))


def test_spaq_attributes(tmp_path):
    fixture = make_spaq(tmp_path, n=5)
    for record in load_dataset("SPAQ", tmp_path):
        assert dict(record.attributes) == pytest.approx(fixture.extra["attributes"][record.image])
        assert set(record.attributes) == {"brightness", "colorfulness", "contrast", "noisiness", "sharpness"}


def test_livec_drops_the_seven_training_images(tmp_path):
    fixture = make_livec(tmp_path, n=9)
    records = load_dataset("livec", tmp_path)
    assert len(records) == 9
    assert not {r.image for r in records} & set(fixture.extra["training"])


def test_kadid_reference_ids(all_datasets):
    root, _ = all_datasets
    records = load_dataset("kadid10k", root)
    assert {r.ref_id for r in records} == {f"I{i:02d}" for i in range(1, 6)}
    assert all(r.image.startswith(r.ref_id + "_") for r in records)


def test_agiqa_images_in_a_subfolder(tmp_path):
    fixture = make_agiqa3k(tmp_path, n=4)
    sub = fixture.folder / "AGIQA-3K"
    sub.mkdir()
    for name in fixture.raw:
        shutil.move(fixture.folder / name, sub / name)
    assert all(r.path.parent == sub and r.path.is_file() for r in load_dataset("agiqa-3k", tmp_path))


def test_aigciqa_without_index_and_cgiqa_in_subfolders(tmp_path):
    make_aigciqa2023(tmp_path, n=4, index=False)
    assert [r.image for r in load_dataset("aigciqa2023", tmp_path)] == [f"allimg/{i}.png" for i in range(4)]
    make_cgiqa6k(tmp_path, n=4, subfolders=True)
    records = load_dataset("cgiqa", tmp_path)
    assert all(r.path.is_file() and r.path.parent.name in ("game", "movie") for r in records)


# -- registry and errors -----------------------------------------------------------------------------------------
def test_registry_names_aliases_and_did_you_mean():
    assert get_dataset("KonIQ-10k").name == "koniq10k"
    assert get_dataset("kadid").name == "kadid10k"
    assert get_dataset("ChallengeDB").name == "livec"
    assert list(DATASETS)[:7] == ["koniq10k", "spaq", "flive", "livec", "cgiqa6k", "kadid10k", "agiqa3k"]
    with pytest.raises(VcriticError) as err:
        get_dataset("konik10k")
    assert err.value.message == "unknown dataset 'konik10k'"
    assert err.value.hint.startswith("did you mean 'koniq10k'?")


def test_missing_dataset_names_what_was_expected(tmp_path):
    with pytest.raises(VcriticError) as err:
        load_dataset("spaq", tmp_path)
    assert "SPAQ not found in" in err.value.message
    assert "Annotations/MOS and Image attribute scores.xlsx" in err.value.message
    assert "github.com/h4nwei/SPAQ" in err.value.hint
    with pytest.raises(VcriticError, match="no such folder"):
        load_dataset("spaq", tmp_path / "nowhere")


def test_missing_column_names_the_file_and_column(tmp_path):
    fixture = make_kadid10k(tmp_path, references=1, types=1, levels=2)
    (fixture.folder / "dmos.csv").write_text("dist_img,ref_img,score\nI01_01_01.png,I01.png,3.0\n")
    with pytest.raises(VcriticError) as err:
        load_dataset("kadid10k", tmp_path)
    assert err.value.message == f"{fixture.folder / 'dmos.csv'} has no column 'dmos' (found: dist_img, ref_img, score)"


def test_bad_values_and_missing_images_folder(tmp_path):
    fixture = make_kadid10k(tmp_path, references=1, types=1, levels=1)
    (fixture.folder / "dmos.csv").write_text("dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,high,0\n")
    with pytest.raises(VcriticError, match=r"dmos.csv: line 2, dmos is 'high', not a number"):
        load_dataset("kadid10k", tmp_path)
    livec = make_livec(tmp_path, n=2)
    shutil.rmtree(livec.folder / "Images")
    with pytest.raises(VcriticError, match=r"Images.* not found \(expected the LIVEC images"):
        load_dataset("livec", tmp_path)


def test_mat_file_without_the_expected_variable(tmp_path):
    import numpy as np
    from scipy.io import savemat

    fixture = make_livec(tmp_path, n=2)
    savemat(fixture.folder / "Data" / "AllMOS_release.mat", {"MOS": np.ones((1, 9))})
    with pytest.raises(VcriticError, match=r"AllMOS_release.mat has no variable 'AllMOS_release' \(found: MOS\)"):
        load_dataset("livec", tmp_path)


# -- manifests ---------------------------------------------------------------------------------------------------
def test_manifest_with_optional_columns(tmp_path):
    (tmp_path / "img").mkdir()
    manifest = tmp_path / "mine.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Path", "MOS", "sharpness", "ai_generated", "ref_id", "split"])
        writer.writerow(["img/a.png", "1", "80", "yes", "r1", "train"])
        writer.writerow(["img/b.png", "5", "20", "0", "r1", "test"])
        writer.writerow([str(tmp_path / "c.png"), "3", "50", "", "r2", ""])
    records = load_manifest(manifest, mos_range=(1, 5))
    assert [r.mos for r in records] == [0, 100, 50]
    assert records[0].path == tmp_path / "img" / "a.png"
    assert records[2].path == tmp_path / "c.png"
    assert [r.ai_generated for r in records] == [True, False, None]
    assert [r.official_split for r in records] == ["train", "test", None]
    assert records[0].attributes == {"sharpness": 80.0}
    assert {r.dataset for r in records} == {"mine"}


def test_manifest_errors(tmp_path):
    manifest = tmp_path / "bad.csv"
    manifest.write_text("file,score\na.png,3\n")
    with pytest.raises(VcriticError, match=r"bad.csv has no mos column \(looked for mos; found: file, score\)"):
        load_manifest(manifest)
    manifest.write_text("image,mos,ai_generated\na.png,3,maybe\n")
    with pytest.raises(VcriticError, match="line 2 is 'maybe'"):
        load_manifest(manifest)
    with pytest.raises(VcriticError, match="not found"):
        load_manifest(tmp_path / "absent.csv")


# -- splits ------------------------------------------------------------------------------------------------------
def fake_records(n: int, dataset: str = "d") -> list[Record]:
    return [Record(Path(f"{i}.jpg"), float(i % 97), dataset, f"{i:05d}.jpg") for i in range(n)]


def kadid_like() -> list[Record]:
    """81 references x 25 distortion types x 5 levels, as in KADID-10k."""
    names = [
        (f"I{r:02d}_{t:02d}_{lv:02d}.png", f"I{r:02d}")
        for r in range(1, 82)
        for t in range(1, 26)
        for lv in range(1, 6)
    ]
    return [Record(Path(name), 50.0, "kadid10k", name, ref_id=ref) for name, ref in names]


def test_random_split_is_80_20_deterministic_and_order_independent():
    records = fake_records(1000)
    first = splits.paper_split(records)
    assert sum(v == "test" for v in first.values()) == 200
    assert splits.paper_split(list(reversed(records))) == first
    assert splits.paper_split(records, seed=splits.SPLIT_SEED) == first
    assert splits.paper_split(records, seed=1) != first
    train = splits.select(records, first, "train")
    test = splits.select(records, first, "test")
    assert len(train) == 800 and len(test) == 200
    assert not {r.image for r in train} & {r.image for r in test}
    assert splits.select(records, first, "all") == records


def test_each_dataset_of_a_manifest_is_split_on_its_own():
    records = fake_records(100, "a") + [Record(r.path, r.mos, "b", "b/" + r.image) for r in fake_records(50)]
    assignment = splits.paper_split(records)
    assert sum(v == "test" for k, v in assignment.items() if k.startswith("b/")) == 10
    assert sum(v == "test" for k, v in assignment.items() if not k.startswith("b/")) == 20
    assert {k: v for k, v in assignment.items() if not k.startswith("b/")} == splits.paper_split(records[:100])


def test_kadid_split_by_reference_65_16():
    records = kadid_like()
    assert len(records) == 10125
    assignment = splits.paper_split(records, by_reference=True)
    train_refs = {r.ref_id for r in records if assignment[r.image] == "train"}
    test_refs = {r.ref_id for r in records if assignment[r.image] == "test"}
    assert len(train_refs) == 65 and len(test_refs) == 16
    assert not train_refs & test_refs
    assert sum(v == "test" for v in assignment.values()) == 16 * 125
    assert splits.paper_split(records[::-1], by_reference=True) == assignment


def test_kadid_fixture_split_keeps_references_together(all_datasets):
    root, _ = all_datasets
    records = load_dataset("kadid10k", root)
    assignment = splits.assign(records, "kadid10k", by_reference=True)
    sides = {}
    for record in records:
        sides.setdefault(record.ref_id, set()).add(assignment[record.image])
    assert all(len(s) == 1 for s in sides.values())
    assert sum(s == {"test"} for s in sides.values()) == 1  # round(5 * 16 / 81) = 1 of 5 references


def test_official_split_and_errors(all_datasets):
    root, _ = all_datasets
    records = load_dataset("koniq10k", root)
    assignment = splits.assign(records, "koniq10k", scheme="official")
    assert set(assignment.values()) == {"train", "val", "test"}
    assert len(splits.select(records, assignment, "val")) == sum(1 for v in assignment.values() if v == "val")
    with pytest.raises(VcriticError, match="spaq has no official split"):
        splits.assign(load_dataset("spaq", root), "spaq", scheme="official")
    with pytest.raises(VcriticError, match="the 'val' split is empty"):
        splits.select(records, splits.paper_split(records), "val")
    with pytest.raises(VcriticError, match="unknown split"):
        splits.select(records, assignment, "dev")
    with pytest.raises(VcriticError, match="unknown split scheme"):
        splits.assign(records, "koniq10k", scheme="mine")


def test_split_files_round_trip(tmp_path):
    records = kadid_like()[:250]
    assignment = splits.paper_split(records, by_reference=True)
    path = splits.write_split(assignment, tmp_path / "out" / "kadid.csv", records)
    lines = path.read_text().splitlines()
    assert lines[0] == "image,split,ref_id"
    assert lines[1] == f"I01_01_01.png,{assignment['I01_01_01.png']},I01"
    assert splits.read_split(path) == assignment


def test_subsample_is_seeded_and_keeps_order():
    records = fake_records(100)
    sample = splits.subsample(records, 10)
    assert len(sample) == 10 and sample == splits.subsample(records, 10)
    assert [records.index(r) for r in sample] == sorted(records.index(r) for r in sample)
    assert splits.subsample(records, None) == records and splits.subsample(records, 500) == records
