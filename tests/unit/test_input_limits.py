"""Bad input gets one line: wrong types and sizes in training dialogues, hostile Excel workbooks, implausible
calibration labels, bad option values (exit 2), and inputs that are not what they claim, all refused before any
model work, never with a traceback, a hang or unbounded memory. (On a tiny model:
tests/integration/test_input_limits_on_a_model.py; end to end: tests/e2e/test_input_limits_cli.py.)"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from vcritic.cli.app import main
from vcritic.data import dialogues as dialogue_module
from vcritic.data.dialogues import read_dialogues
from vcritic.errors import VcriticError
from vcritic.readout.prompts import QUALITY

GOOD = {
    "question": "quality",
    "task": "quality",
    "images": ["a.png"],
    "instruction": QUALITY.instruction,
    "answer": QUALITY.answer(" good"),
}


def _write_lines(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"answer": None}, "'answer' is null, not a string"),
        ({"instruction": 5}, "'instruction' is a number (5), not a string"),
        ({"images": "a.png"}, "'images' is a string, not a list"),
        ({"images": [3]}, "image 3 is not a file path"),
        ({"images": ["a.png", "b.png"]}, "2 image(s) for a 'quality' question, which shows 1"),
        ({"images": []}, "0 image(s) for a 'quality' question"),
        ({"dataset": ["x"]}, "'dataset' is a list, not a string"),
        ({"meta": [1]}, "'meta' is a list, not an object"),
        ({"instruction": "x" * 100_000}, "'instruction' is 100,000 characters, over the 16,000 allowed"),
        ({"instruction": "x" * 5_000_000}, "is longer than 1024 KiB"),
        ({"answer": QUALITY.answer_prefix + " good" * 10_000}, "'answer' is 50,0"),
        ({"answer": "Good."}, "a 'quality' answer must start with"),
    ],
)
def test_a_dialogue_field_of_the_wrong_type_or_size_is_refused_with_its_line(tmp_path, change, said):
    path = _write_lines(tmp_path / "dialogues.jsonl", [GOOD, GOOD, {**GOOD, **change}])
    with pytest.raises(VcriticError) as err:
        list(read_dialogues(path))
    assert err.value.message.startswith(f"{path}, line 3") and said in err.value.message


def test_a_dialogue_file_without_line_breaks_is_not_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(dialogue_module, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "dialogues.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + " " * 5000)
    with pytest.raises(VcriticError, match=r"line 2 is longer than 0 KiB"):
        list(read_dialogues(path))
    monkeypatch.setattr(dialogue_module, "MAX_FILE_BYTES", 100)
    with pytest.raises(VcriticError, match="GiB a dialogue file may be"):
        list(read_dialogues(path))


def test_train_refuses_bad_dialogues_before_loading_the_model(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _write_lines(data / "dialogues.jsonl", [GOOD, {**GOOD, "instruction": "x" * 5_000_000}])
    args = ["train", "--stage", "1", "--model", str(tmp_path / "no-model-here"), "--data", str(data)]
    assert main([*args, "-o", str(tmp_path / "out"), "--config", "tiny"]) == 1
    err = capsys.readouterr().err
    assert "dialogues.jsonl, line 2 is longer than 1024 KiB" in err and "Traceback" not in err


def test_train_data_folder_that_does_not_exist_says_so(tmp_path, capsys):
    args = ["train", "--stage", "1", "--model", "x", "--data", str(tmp_path / "nosuch"), "-o", str(tmp_path / "o")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"no such folder: {tmp_path / 'nosuch'}" in err and "dialogues.jsonl" not in err.split("Hint")[0]


# --- Excel annotations (SPAQ) -------------------------------------------------------------------------------------

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    "%s</Types>"
)
SHEET_TYPE = (
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
)
ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>%s</sheets></workbook>'
)
WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">%s</Relationships>'
)
SHEET_REL = (
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/>'
)
SHEET = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>%s'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    '<row r="1"><c r="A1" t="inlineStr"><is><t>%s</t></is></c></row></sheetData></worksheet>'
)
LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    '<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>'
)


def _xlsx(path: Path, *, sheet: str | None = SHEET % ("", "Image name"), extra: dict | None = None) -> Path:
    """A minimal workbook built by hand, so each part can be made hostile."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES % (SHEET_TYPE if sheet is not None else ""))
        archive.writestr("_rels/.rels", ROOT_RELS)
        listed = '<sheet name="S" sheetId="1" r:id="rId1"/>' if sheet is not None else ""
        archive.writestr("xl/workbook.xml", WORKBOOK % listed)
        archive.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS % (SHEET_REL if sheet is not None else ""))
        if sheet is not None:
            archive.writestr("xl/worksheets/sheet1.xml", sheet)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def test_a_hand_built_workbook_reads(tmp_path):
    from vcritic.datasets.records import read_xlsx_rows

    assert read_xlsx_rows(_xlsx(tmp_path / "ok.xlsx"), "x") == [("Image name",)]


@pytest.mark.parametrize(
    ("build", "said"),
    [
        (dict(sheet=None), "has no worksheet"),
        (dict(sheet=(SHEET % ("", "unclosed")).replace("</row>", "")), "is not a readable .xlsx file"),
        (dict(sheet=SHEET % (LAUGHS, "&lol4;")), "declares XML entities (DOCTYPE)"),
        (
            dict(sheet=SHEET % ('<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', "&xxe;")),
            "declares XML entities (DOCTYPE)",
        ),
        (dict(extra={"xl/sharedStrings.xml": "<?xml version='1.0'?>\n<!DOCTYPE x>\n<sst/>"}), "(DOCTYPE)"),
    ],
)
def test_a_hostile_workbook_is_refused_in_one_line(tmp_path, build, said):
    from vcritic.datasets.records import read_xlsx_rows

    path = _xlsx(tmp_path / "bad.xlsx", **build)
    with pytest.raises(VcriticError) as err:
        read_xlsx_rows(path, "the SPAQ scores")
    assert said in err.value.message and str(path) in err.value.message and "\n" not in err.value.message


def test_a_zip_bomb_workbook_is_refused_from_its_directory_before_parsing(tmp_path, monkeypatch):
    from vcritic.datasets import records

    monkeypatch.setattr(records, "MAX_XLSX_EXPANDED", 20 << 20)
    path = _xlsx(tmp_path / "bomb.xlsx", extra={"xl/media/zeros.bin": bytes(50 << 20)})
    assert path.stat().st_size < 200_000  # 50 MB of zeros compress ~1000 fold
    with pytest.raises(VcriticError, match=r"expands to 50 MiB, over the 20 MiB"):
        records.read_xlsx_rows(path, "the SPAQ scores")
    # The ratio alone gives it away too, whatever the total.
    monkeypatch.setattr(records, "MAX_XLSX_EXPANDED", 1 << 40)
    with pytest.raises(VcriticError, match=r"xl/media/zeros.bin is compressed \d+ to 1"):
        records.read_xlsx_rows(path, "the SPAQ scores")


def test_spaq_with_a_hostile_workbook_exits_1_in_one_line(tmp_path, capsys):
    root = tmp_path / "spaq"
    (root / "Annotations").mkdir(parents=True)
    (root / "TestImage").mkdir()
    _xlsx(root / "Annotations" / "MOS and Image attribute scores.xlsx", sheet=None)
    (tmp_path / "p.csv").write_text("path,mos\nx.jpg,50\n")
    assert main(["bench", "spaq", "--root", str(tmp_path), "--predictions", str(tmp_path / "p.csv")]) == 1
    err = capsys.readouterr().err
    assert "has no worksheet" in err and "Traceback" not in err and "IndexError" not in err


# --- calibrate ----------------------------------------------------------------------------------------------------


def _ratings(path: Path, extra: list[str]) -> Path:
    lines = ["path,mos,scale,error,rating"]
    lines += [f"img{i}.png,{10 + i * 0.8:.2f},0-100,,{1 + i * 0.04:.3f}" for i in range(100)]
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


@pytest.mark.parametrize(
    ("row", "said"),
    [
        ("odd.png,-50,0-100,,3", "line 102: mos -50 lies outside vcritic's 0-100"),
        ("odd.png,1e308,0-100,,3", "line 102: mos 1e+308 lies outside vcritic's 0-100"),
        ("odd.png,nan,0-100,,3", "line 102: mos 'nan' or rating '3' is not a finite number"),
        ("odd.png,inf,0-100,,3", "is not a finite number"),
        ("img7.png,15.6,0-100,,4.5", "img7.png appears on lines 9 and 102 with different mos or rating"),
    ],
)
def test_calibrate_refuses_scores_off_the_scale_and_conflicting_duplicates(tmp_path, capsys, row, said):
    path = _ratings(tmp_path / "ratings.csv", [row])
    args = ["calibrate", "-p", str(path), "--target", "rating", "-m", str(tmp_path), "-o", str(tmp_path / "c.json")]
    assert main(args) == (2 if "appears on lines" in said else 1)  # a conflicting duplicate is a usage error
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and not (tmp_path / "c.json").exists()


def test_calibrate_counts_an_identical_duplicate_once(tmp_path, capsys):
    path = _ratings(tmp_path / "ratings.csv", ["img7.png,15.60,0-100,,1.280"])
    args = ["calibrate", "-p", str(path), "--target", "rating", "-m", str(tmp_path), "-o", "-"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n"] == 100 and "1 repeated row(s)" in captured.err


def test_the_calibration_library_refuses_scores_off_the_0_100_scale():
    from vcritic.evaluation.calibration import ModelId, TargetScale
    from vcritic.evaluation.calibration import calibrate as fit

    mos = [float(i) for i in range(50)] + [150.0]
    with pytest.raises(VcriticError, match="outside vcritic's 0-100"):
        fit(mos, list(range(51)), target=TargetScale("x", 0, 60), model=ModelId("m"), dataset="d")


def test_bench_predictions_is_not_refused_for_a_model_set_in_the_environment(tmp_path, capsys, monkeypatch):
    from support.dataset_fixtures import make_koniq10k

    from vcritic.evaluation import bench

    make_koniq10k(tmp_path)
    records = bench.prepare("koniq10k", tmp_path, split="all").records
    scores = tmp_path / "scores.csv"
    scores.write_text("path,mos,scale,error\n" + "".join(f"{r.path},{r.mos:.3f},0-100,\n" for r in records))
    monkeypatch.setenv("VCRITIC_MODEL", "some-model")
    args = ["bench", "koniq10k", "--root", str(tmp_path), "--predictions", str(scores), "--json"]
    assert main(args) == 0, capsys.readouterr().err
    assert main([*args, "--model", "other"]) == 2
    assert "--model and --predictions exclude each other" in capsys.readouterr().err
    scores.write_text("path,mos,scale,error\n" + "".join(f"{r.path},-50,0-100,\n" for r in records))
    assert main([*args[:-1]]) == 1
    assert "has mos -50, outside vcritic's 0-100 scale" in capsys.readouterr().err


# --- exit codes ---------------------------------------------------------------------------------------------------


def test_a_bad_option_value_exits_2_in_every_command_before_any_work(tmp_path, capsys):
    """A usage error (a bad value, conflicting options) is exit 2 everywhere, found before a dataset is read or a
    model is looked up (neither exists here); runtime errors stay exit 1."""
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(image)
    nothing = str(tmp_path / "no-such-model")
    out = ["-o", str(tmp_path / "out.csv")]
    cases = [
        ["score", str(image), "--tasks", "mos,sharpnes"],
        ["score", str(image), "--tasks", "none"],
        ["score", str(image), "--batch-size", "0"],
        ["score", str(image), "--device", "cpux"],
        ["score", str(image), "--dtype", "float8"],
        ["score", str(image), "--readout", "q-realing"],
        ["score", str(image), "--resume"],
        ["score", str(image), *out, "--resume", "--overwrite"],
        ["compare", str(image), str(image), "--device", "gpu"],
        ["rank", str(tmp_path), "-k", "0"],
        ["describe", str(image), "--tasks", "none,mos"],
        ["chat", str(image), "--dtype", "int4"],
        ["bench", "koniq10k", "--split", "tset"],
        ["bench", "koniq10k", "--split-scheme", "nope"],
        ["bench", "koniq10k", "--mos-range", "5-1"],
        ["bench", "konik", "--root", str(tmp_path)],
        ["calibrate", "-d", "koniq10k", "--split", "tset"],
        ["calibrate", "-d", "koniq10k", "--kind", "linear"],
        ["calibrate", "-p", str(image), "--target", "y", "--target-range", "9"],
        ["train", "--stage", "1", "-m", nothing, "--data", str(tmp_path), *out, "--batch-size", "0"],
        ["train", "--stage", "1", "-m", nothing, "--data", str(tmp_path), *out, "--lr", "nan"],
        ["train", "--stage", "4", "-m", nothing, "--data", str(tmp_path), *out],
        ["train", "--stage", "1", "-m", nothing, "--data", str(tmp_path), *out, "--config", "tiyn"],
        ["data", "build", "--stage", "1", "--root", str(tmp_path), "--out", str(tmp_path / "d"), "--val-fraction", "2"],
        ["data", "synth", str(tmp_path), "--out", str(tmp_path / "s"), "--levels", "1"],
        ["report", str(tmp_path / "x.csv")],
    ]
    for args in cases:
        capsys.readouterr()
        code = main([*args, "-m", nothing] if args[0] in ("score", "compare", "chat", "describe") else args)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert "Error" in err and "Traceback" not in err and "no-such-model" not in err, (args, err)
    # Runtime errors are 1: a missing file, a model that is not there.
    assert main(["score", str(tmp_path / "gone.png"), "-m", nothing]) == 1
    assert main(["score", str(image), "-m", nothing, "--device", "cpu"]) == 1


# --- inputs that are not images -----------------------------------------------------------------------------------


def test_score_with_no_readable_image_is_refused_before_the_model_loads(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"\xff\xd8 not really")
    nothing = str(tmp_path / "no-such-model")
    for inputs in ([notes], [notes, fake]):
        assert main(["score", *map(str, inputs), "-m", nothing, "-o", str(tmp_path / "s.csv")]) == 1
        err = capsys.readouterr().err
        assert f"{notes}: not an image, or a format Pillow cannot read" in err, err
        assert "no-such-model" not in err and "Traceback" not in err and not (tmp_path / "s.csv").exists()
    assert main(["describe", str(notes), "-m", nothing]) == 1
    assert "not an image" in capsys.readouterr().err


# --- outputs that fail --------------------------------------------------------------------------------------------


# --- every input file has a bound -----------------------------------------------------------------------------------


def test_input_files_over_their_bound_or_not_regular_are_refused_before_reading(tmp_path, monkeypatch):
    import os

    from vcritic.base import limits
    from vcritic.cli.compare import read_pairs
    from vcritic.datasets.manifest import load_manifest
    from vcritic.evaluation.calibration import Calibration
    from vcritic.training.config import read_yaml

    monkeypatch.setattr(limits, "MAX_TABLE_BYTES", 1000)
    monkeypatch.setattr(limits, "MAX_JSON_BYTES", 1000)
    monkeypatch.setattr(limits, "MAX_YAML_BYTES", 1000)
    big = {
        "m.csv": "path,mos\n" + "a.png,1\n" * 200,
        "p.csv": "a,b\n" + "a.png,b.png\n" * 200,
        "c.json": "{" + " " * 2000 + "}",
        "t.yaml": "lr: 1e-3\n" + "#" * 2000,
    }
    readers = {
        "m.csv": lambda p: load_manifest(p),
        "p.csv": read_pairs,
        "c.json": Calibration.load,
        "t.yaml": read_yaml,
    }
    for name, text in big.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(VcriticError, match=r"is [\d.]+ KiB, over the 1000 bytes"):
            readers[name](tmp_path / name)
        fifo = tmp_path / f"fifo-{name}"
        os.mkfifo(fifo)  # read whole, a FIFO would block forever
        with pytest.raises(VcriticError, match="not a regular file|not found"):
            readers[name](fifo)


def _sparse(path: Path, size: int) -> Path:
    """A real file of ``size`` bytes that costs no disk (a hole): what a size bound sees before reading."""
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def test_vcritic_json_data_json_and_run_json_over_the_json_bound_are_refused_naming_file_and_bound(tmp_path):
    from vcritic.base.limits import MAX_JSON_BYTES
    from vcritic.data.datadir import read_train_data as read_data
    from vcritic.inference.loading import read_manifest
    from vcritic.training.config import TrainConfig
    from vcritic.training.run_json import resume_settings

    for folder in ("model", "data", "run"):
        (tmp_path / folder).mkdir()
    _sparse(tmp_path / "model" / "vcritic.json", MAX_JSON_BYTES + 1)
    with pytest.raises(VcriticError, match=r"model/vcritic.json is 16,777,217 bytes, over the 16,777,216 bytes a "):
        read_manifest(tmp_path / "model")
    _write_lines(tmp_path / "data" / "dialogues.jsonl", [GOOD])
    _sparse(tmp_path / "data" / "data.json", MAX_JSON_BYTES * 2)
    with pytest.raises(VcriticError, match=r"data/data.json is 32 MiB, over the 16 MiB a data.json may be"):
        read_data(tmp_path / "data")
    _sparse(tmp_path / "run" / "run.json", MAX_JSON_BYTES * 2)
    with pytest.raises(VcriticError, match=r"run/run.json is 32 MiB, over the 16 MiB a run.json may be"):
        resume_settings(tmp_path / "run", TrainConfig(), ())


def test_score_with_an_oversized_vcritic_json_is_one_line_before_loading(tmp_path, capsys):
    from PIL import Image

    from vcritic.base.limits import MAX_JSON_BYTES

    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    (tmp_path / "model").mkdir()
    _sparse(tmp_path / "model" / "vcritic.json", MAX_JSON_BYTES * 4)
    assert main(["score", str(tmp_path / "a.png"), "-m", str(tmp_path / "model")]) == 1
    err = capsys.readouterr().err
    assert "vcritic.json is 64 MiB, over the 16 MiB a vcritic.json may be" in err and "Traceback" not in err


@pytest.mark.parametrize("text", ['{"config": ', "[1, 2]", "\udcff", "[" * 50_000])
def test_a_damaged_run_json_is_one_line_on_resume(tmp_path, text):
    from vcritic.training.config import TrainConfig
    from vcritic.training.run_json import resume_settings

    (tmp_path / "run.json").write_text(text, errors="surrogateescape")
    with pytest.raises(VcriticError, match="run.json is not a run.json vcritic wrote"):
        resume_settings(tmp_path, TrainConfig(), ())


def test_a_resumed_csv_over_its_bound_is_refused_before_reading_and_left_as_it_was(tmp_path):
    from vcritic.base.limits import MAX_RESUME_BYTES
    from vcritic.cli._csv import open_output

    path = tmp_path / "scores.csv"
    path.write_text("path,mos,error\na.png,50,\n")
    with open(path, "r+b") as handle:
        handle.truncate(MAX_RESUME_BYTES + 1)
    said = r"scores.csv is 1,073,741,825 bytes, over the 1,073,741,824 bytes a CSV to --resume may be"
    with pytest.raises(VcriticError, match=said):
        open_output(path, ["path", "mos", "error"], resume=True)
    assert path.stat().st_size == MAX_RESUME_BYTES + 1
    with open(path, "r+b") as handle:
        handle.truncate(len("path,mos,error\na.png,50,\n"))
    with open_output(path, ["path", "mos", "error"], resume=True) as out:  # at its real size it resumes
        assert out.rows_before == 1


@pytest.mark.parametrize(
    ("tail", "line"),
    [(b'"a stray quote,1,\n', 4), (b"\xff\xfe not UTF-8,1,\n", 4), (b"\x89PNG\r\n\x1a\n\xff", 1)],
)
def test_resume_refuses_a_csv_whose_damaged_tail_is_longer_than_a_torn_row_and_leaves_it_alone(tmp_path, tail, line):
    """A killed run leaves one torn row, which --resume cuts off; a stray quote or bytes that are not UTF-8 early in
    a large file made the rest of it a "torn row": cut off (all those rows lost), after a quadratic parse."""
    import time

    from vcritic.cli._csv import open_output

    path = tmp_path / "scores.csv"
    head = b"path,mos,error\na.png,50,\nb.png,51,\n" if line > 1 else b""
    path.write_bytes(head + tail + b"".join(b"img%06d.png,60.5,\n" % i for i in range(100_000)))
    before = path.read_bytes()
    started = time.monotonic()
    with pytest.raises(VcriticError, match=rf"scores.csv: from line {line} on, its last [\d.]+ MiB are not whole CSV"):
        open_output(path, ["path", "mos", "error"], resume=True)
    assert time.monotonic() - started < 10  # one pass (the quadratic reader took minutes here)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "data"),
    [("c.json", b"[" * 100_000), ("c.json", b"\xff\xfe{}"), ("t.yaml", b"\xff\xfe lr: 1"), ("t.yaml", b"[" * 50_000)],
)
def test_undecodable_or_deeply_nested_config_files_are_one_line(tmp_path, name, data):
    from vcritic.evaluation.calibration import Calibration
    from vcritic.training.config import read_yaml

    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(VcriticError):
        (Calibration.load if name.endswith(".json") else read_yaml)(path)


# --- a folder walk accounts for what it cannot search --------------------------------------------------------------


def _too_deep(folder: Path) -> Path:
    """A folder nested past PATH_MAX (4096 bytes): even root cannot list it by its path."""
    import os

    fd = os.open(folder, os.O_RDONLY)
    try:
        for _ in range(20):
            os.mkdir("d" * 250, dir_fd=fd)
            inner = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)
    return folder / "/".join(["d" * 250] * 20)


def test_a_folder_walk_reports_linked_and_unlistable_folders(tmp_path):
    from PIL import Image

    from vcritic.base.images import find_images

    photos, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    photos.mkdir()
    elsewhere.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "a.png")
    Image.new("RGB", (8, 8)).save(elsewhere / "b.png")
    (photos / "linked").symlink_to(elsewhere, target_is_directory=True)
    _too_deep(photos)
    skipped, unsearched = [], []
    assert find_images([photos], skipped, unsearched) == [photos / "a.png"]
    reasons = {path.name[:10]: why for path, why in unsearched}
    assert reasons["linked"] == "a linked folder (not followed)"
    assert reasons["d" * 10].startswith("cannot list it: File name too long")
    assert len(unsearched) == 2


# --- small JSON files vcritic wrote beside bigger ones: bounded, and one line when damaged -------------------------

DAMAGED = {
    "not UTF-8": (b"\xff\xfe{}", "not UTF-8 text"),
    "nested": (b"[" * 100_000, "nested too deeply"),
    "not an object": (b"[1, 2]", "the JSON is not an object"),
    "cut short": (b'{"step": ', "not valid JSON"),
}


def _small_json_readers(tmp_path: Path) -> dict[str, tuple[Path, object]]:
    """Each small JSON file vcritic reads whole, where it lies, and the call that reads it (before any model)."""
    from vcritic.inference.loading import load_model
    from vcritic.training.checkpoints import read_position
    from vcritic.training.config import TrainConfig
    from vcritic.training.run_folder import check_output
    from vcritic.training.run_json import resume_config

    run = tmp_path / "run"
    step = run / "checkpoints" / "step-2"
    step.mkdir(parents=True)
    saved = {"stage": 1, "model": "m", "data": str(tmp_path.resolve()), "config": TrainConfig(steps=4).to_dict()}
    (run / "run.json").write_text(json.dumps(saved))
    (step / "position.json").write_text(json.dumps({"step": 2}))
    adapter = tmp_path / "trained"
    adapter.mkdir()
    (adapter / "vcritic.json").write_text(json.dumps({"format": 1, "base_model": ".", "adapter": "."}))
    owned = tmp_path / "owned"
    owned.mkdir()
    return {
        "position.json": (step / "position.json", lambda: read_position(step)),
        "position.json on resume": (
            step / "position.json",
            lambda: resume_config(run, 1, "m", tmp_path, TrainConfig(steps=4)),
        ),
        "adapter_config.json": (
            adapter / "adapter_config.json",
            lambda: load_model(str(adapter), dtype=None),
        ),
        "marker": (owned / ".vcritic-output.json", lambda: check_output(owned, resume=False, overwrite=True)),
    }


@pytest.mark.parametrize("name", ["position.json", "position.json on resume", "adapter_config.json", "marker"])
def test_small_json_files_over_their_bound_are_refused_naming_file_and_bound(tmp_path, name):
    from vcritic.base.limits import MAX_SMALL_JSON_BYTES

    path, read = _small_json_readers(tmp_path)[name]
    _sparse(path, MAX_SMALL_JSON_BYTES * 3)
    with pytest.raises(VcriticError) as err:
        read()
    assert f"{path} is 3 MiB, over the 1 MiB" in err.value.message


@pytest.mark.parametrize("damage", DAMAGED)
@pytest.mark.parametrize("name", ["position.json", "position.json on resume", "adapter_config.json", "marker"])
def test_damaged_small_json_files_are_one_line_naming_the_file(tmp_path, name, damage):
    path, read = _small_json_readers(tmp_path)[name]
    data, said = DAMAGED[damage]
    path.write_bytes(data)
    with pytest.raises(VcriticError) as err:
        read()
    assert str(path) in err.value.message and said in err.value.message and "\n" not in err.value.message


@pytest.mark.parametrize("position", [{}, {"step": "2"}, {"step": -1}, {"step": 2.5}])
def test_a_position_json_without_a_whole_step_is_one_line(tmp_path, position):
    from vcritic.training.checkpoints import read_position

    (tmp_path / "position.json").write_text(json.dumps(position))
    with pytest.raises(VcriticError, match="position.json is not a position.json vcritic can read: no whole 'step'"):
        read_position(tmp_path)


@pytest.mark.parametrize("damage", [*DAMAGED, "too large"])
def test_a_damaged_scheduler_json_is_one_line_before_the_scheduler_sees_it(tmp_path, damage):
    from vcritic.base.limits import MAX_SMALL_JSON_BYTES
    from vcritic.training.checkpoints import SCHEDULER, read_scheduler_state

    path = tmp_path / SCHEDULER
    if damage == "too large":
        _sparse(path, MAX_SMALL_JSON_BYTES + 1)
        said = "over the 1,048,576 bytes a scheduler.json may be"
    else:
        data, said = DAMAGED[damage]
        path.write_bytes(data)
    with pytest.raises(VcriticError) as err:
        read_scheduler_state(tmp_path)
    assert str(path) in err.value.message and said in err.value.message


def test_a_marker_whose_files_is_not_a_list_is_refused_before_overwrite(tmp_path):
    from vcritic.training.run_folder import check_output

    (tmp_path / ".vcritic-output.json").write_text(json.dumps({"written_by": "vcritic train", "files": "abc"}))
    (tmp_path / "a").write_text("not vcritic's")
    with pytest.raises(VcriticError, match="'files' is not a list"):
        check_output(tmp_path, resume=False, overwrite=True)
    assert (tmp_path / "a").is_file()


def test_an_instruct_file_over_its_bound_or_nested_too_deeply_is_one_line(tmp_path, monkeypatch):
    from vcritic.data import instruct

    monkeypatch.setattr(instruct, "MAX_INSTRUCT_BYTES", 1000)
    path = tmp_path / "llava.json"
    path.write_text("[" + " " * 2000 + "]")
    with pytest.raises(VcriticError, match=r"llava.json is 1.96 KiB, over the 1000 bytes an --instruct file may be"):
        instruct.read_instruct(path, None)
    monkeypatch.setattr(instruct, "MAX_INSTRUCT_BYTES", 1 << 20)
    path.write_text("[" * 100_000)
    with pytest.raises(VcriticError, match="nested too deeply"):
        instruct.read_instruct(path, None)


@pytest.mark.parametrize(("data", "said"), [(b"[1, 2]", "the JSON is not an object"), (b"[" * 100_000, "nested too")])
def test_a_damaged_data_json_is_refused_before_the_dialogues_are_read(tmp_path, data, said):
    from vcritic.data.datadir import read_train_data
    from vcritic.data.dialogues import MAX_FILE_BYTES

    _sparse(tmp_path / "dialogues.jsonl", MAX_FILE_BYTES + 1)  # read first, this is refused as too large
    (tmp_path / "data.json").write_bytes(data)
    with pytest.raises(VcriticError) as err:
        read_train_data(tmp_path)
    assert err.value.message.startswith(f"{tmp_path / 'data.json'} is not a data.json") and said in err.value.message


def test_resuming_drops_later_and_damaged_log_lines_without_reading_the_log_whole(tmp_path, monkeypatch):
    from vcritic.training import run_folder

    monkeypatch.setattr(run_folder, "MAX_METRICS_LINE_BYTES", 100)
    lines = [
        b'{"step": 1, "loss": 2.5}\n',
        b"[" * 50_000 + b"\n",  # over the line bound, and nested too deeply
        b"[1, 2]\n",
        b'{"step": "2"}\n',
        b"\xff\xfe\n",
        b'{"step": 2, "loss": 2.0}\n',
        b'{"step": 3, "loss": 1.5}\n',
        b'{"step": 4, "lo',  # torn by a kill
    ]
    (tmp_path / "metrics.jsonl").write_bytes(b"".join(lines))
    run_folder.truncate_metrics(tmp_path, 2)
    assert (tmp_path / "metrics.jsonl").read_bytes() == lines[0] + lines[5]


def test_a_hub_cache_ref_that_is_too_large_or_not_a_file_names_no_commit(tmp_path):
    import os

    from vcritic.model.hub import MAX_REF_BYTES, read_ref

    (tmp_path / "main").write_text("a" * 40 + "\n")
    assert read_ref(tmp_path / "main") == "a" * 40
    (tmp_path / "big").write_text("a" * (MAX_REF_BYTES + 1))
    os.mkfifo(tmp_path / "fifo")  # read, it would block forever
    assert read_ref(tmp_path / "big") is None and read_ref(tmp_path / "fifo") is None
    assert read_ref(tmp_path / "missing") is None


def test_a_mat_file_over_its_bound_is_refused_before_scipy_reads_it(tmp_path, monkeypatch):
    from vcritic.datasets import records

    monkeypatch.setattr(records, "MAX_MAT_BYTES", 1000)
    path = tmp_path / "AllMOS_release.mat"
    path.write_bytes(b"\0" * 2000)
    with pytest.raises(VcriticError, match=r"release.mat is 1.95 KiB, over the 1000 bytes the LIVE-C MOS may be"):
        records.load_mat_array(path, "AllMOS_release", "the LIVE-C MOS")
