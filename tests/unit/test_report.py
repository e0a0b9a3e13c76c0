"""``vcritic report``: each kind of input rendered and parsed back, escaping, placeholders, the size cap, the output
rules and the refusals. The inputs are written by vcritic's own writers (score_fields, rank --from-pairs, bench
--predictions --out), no model needed."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from support.dataset_fixtures import make_koniq10k, make_spaq

from vcritic.base.csvio import DictWriter
from vcritic.cli.app import app, main
from vcritic.pipeline.scoring import score_columns, score_fields
from vcritic.report import build_report, svg
from vcritic.report.page import MAX_FAILED_LISTED

SVG = "{http://www.w3.org/2000/svg}"


class Page(HTMLParser):
    """What a browser would see: elements, images (src, alt), placeholders, table cells and text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.handlers: list[tuple[str, str]] = []  # on* attributes anywhere
        self.images: list[dict[str, str]] = []
        self.placeholders: list[str] = []
        self.captions: list[str] = []
        self.cells: list[str] = []
        self.meta: list[dict[str, str]] = []
        self._in: list[str] = []
        self._text: list[str] = []
        self.text = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append(tag)
        self.handlers += [(tag, name) for name in attributes if name.lower().startswith("on")]
        if tag == "img":
            self.images.append(attributes)
        if tag == "meta":
            self.meta.append(attributes)
        if tag in ("figcaption", "td") or (tag == "div" and attributes.get("class") == "missing"):
            self._in.append(tag)
            self._text = []

    def handle_endtag(self, tag):
        if self._in and tag == self._in[-1] or (tag == "div" and self._in and self._in[-1] == "div"):
            kind = self._in.pop()
            text = "".join(self._text)
            {"figcaption": self.captions, "td": self.cells, "div": self.placeholders}[kind].append(text)

    def handle_data(self, data):
        self.text += data
        self._text.append(data)


def svgs(text: str) -> list[ET.Element]:
    """Every inline SVG of the page, parsed as XML (which fails unless it is well-formed)."""
    return [ET.fromstring(block) for block in re.findall(r"<svg\b.*?</svg>", text, re.S)]


def thumbnail(src: str) -> Image.Image:
    assert src.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert image.format == "JPEG"
    return image.convert("RGB")


def colour(i: int) -> tuple[int, int, int]:
    return (20 + 37 * i % 220, 200 - 23 * i % 180, 60 + 51 * i % 190)


def write_scores(path: Path, rows: list[dict[str, str]], tasks=("mos",)) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = DictWriter(handle, score_columns(tasks))
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def solid_images(folder: Path, count: int, size=(64, 48)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i:03d}.png"
        Image.new("RGB", size, colour(i)).save(path)
        paths.append(path)
    return paths


def close(a, b, tolerance=6) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


# -- scores ------------------------------------------------------------------------------------------------------
def test_scores_report_best_first_with_attributes_errors_and_a_placeholder(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = solid_images(tmp_path / "photos", 5, size=(400, 300))
    mos = [40.0, 90.5, 10.25, 65.0, 77.0]
    tasks = ("mos", "attributes", "authenticity")
    rows = [
        score_fields(os.path.join("photos", p.name), m, 5.0, None, tasks=tasks, p_ai_generated=i / 10,
                     attributes={"brightness": 50 + i, "sharpness": 20.0}, attributes_std={"brightness": 1.0})
        for i, (p, m) in enumerate(zip(paths, mos, strict=True))
    ]  # fmt: skip
    rows.append(score_fields("photos/gone.png", 50.0, 5.0, None, tasks=tasks))  # scored once, deleted since
    (tmp_path / "photos" / "spoilt.png").write_text("overwritten since it was scored")
    rows.append(score_fields("photos/spoilt.png", 30.0, 5.0, None, tasks=tasks))
    rows.append(score_fields("photos/broken.png", None, None, "not an image, or a format Pillow cannot read",
                             tasks=tasks))  # fmt: skip
    source = write_scores(tmp_path / "scores.csv", rows, tasks)

    result = runner.invoke(app, ["report", str(source), "-o", "report.html"])
    assert result.exit_code == 0, result.output
    assert "Report (7 of 7 image(s) shown, 1 without a score listed" in result.output
    page = Page((tmp_path / "report.html").read_text(encoding="utf-8"))

    order = sorted(range(5), key=lambda i: -mos[i])  # 90.5, 77, 65, 40, 10.25
    assert [image["alt"] for image in page.images] == [os.path.join("photos", paths[i].name) for i in order]
    for image, i in zip(page.images, order, strict=True):
        picture = thumbnail(image["src"])
        assert max(picture.size) == 160 and close(picture.getpixel((80, 60)), colour(i))
    # the missing and the spoilt file keep their places (MOS 50 and 30) as placeholders with the reason
    assert page.placeholders == ["file not found", "not an image, or a format Pillow cannot read"]
    assert page.captions[3].startswith("#4 MOS 50.0 ± 5.0") and page.captions[5].startswith("#6 MOS 30.0 ± 5.0")
    first = page.captions[0]
    assert first.startswith("#1 MOS 90.5 ± 5.0") and "brightness 51.0, sharpness 20.0" in first
    assert "P(AI-generated) 0.100" in first and first.endswith(os.path.join("photos", paths[1].name))
    assert page.cells == ["9", "photos/broken.png", "not an image, or a format Pillow cannot read"]
    assert "MOS: mean 51.82, median 50.00, min 10.25, max 90.50" in page.text
    assert "script" not in page.tags and not page.handlers
    (histogram,) = svgs((tmp_path / "report.html").read_text(encoding="utf-8"))
    bars = [int(rect.find(f"{SVG}title").text.rsplit(": ", 1)[1]) for rect in histogram.iter(f"{SVG}rect")
            if rect.find(f"{SVG}title") is not None]  # fmt: skip
    assert sum(bars) == 7


def test_scores_without_mos_are_sorted_by_the_first_readout(tmp_path):
    paths = solid_images(tmp_path, 3)
    rows = [score_fields(str(p), None, None, None, tasks=("authenticity",), p_ai_generated=v)
            for p, v in zip(paths, (0.2, 0.9, 0.5), strict=True)]  # fmt: skip
    text = build_report(write_scores(tmp_path / "ai.csv", rows, ("authenticity",)))
    page = Page(text)
    assert [image["alt"] for image in page.images] == [str(paths[i]) for i in (1, 2, 0)]
    assert "sorted by P(AI-generated), highest first (the file has no mos column)" in page.text
    assert len(svgs(text)) == 1


def test_escaping_holds_for_paths_and_errors(tmp_path, monkeypatch):
    # A file really named so: folder '<script>alert(1)<' holding 'script>.jpg'.
    folder = tmp_path / "<script>alert(1)<"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(folder / "script>.jpg")
    evil = "<script>alert(1)</script>.jpg"
    onerror = "<img src=x onerror=alert(2)>&amp;\"'\r.png"
    monkeypatch.chdir(tmp_path)
    rows = [score_fields(evil, 70.0, 1.0, None), score_fields(onerror, 60.0, 1.0, None),
            score_fields("x.png", None, None, "<b>bold</b> & </td></table><script>alert(3)</script>")]  # fmt: skip
    text = build_report(write_scores(tmp_path / "scores.csv", rows))
    page = Page(text)
    assert page.tags.count("script") == 0 and not page.handlers
    assert [image["alt"] for image in page.images] == [evil]  # the real file, shown
    assert page.captions[0].endswith(evil)
    assert page.captions[1].endswith("<img src=x onerror=alert(2)>&amp;\"'\\x0d.png")  # \r shown, not raw
    assert page.cells[-1] == "<b>bold</b> & </td></table><script>alert(3)</script>"
    assert page.tags.count("img") == 1 and page.tags.count("table") == 1
    policy = [m["content"] for m in page.meta if m.get("http-equiv") == "Content-Security-Policy"]
    assert policy == ["default-src 'none'; img-src data:; style-src 'unsafe-inline'"]
    # A CSV whose file name is not UTF-8 (Python holds the byte as a surrogate): shown escaped, the page stays UTF-8.
    odd = tmp_path / os.fsdecode(b"scores-\xff.csv")
    odd.write_bytes((tmp_path / "scores.csv").read_bytes())
    assert "vcritic scores report: scores-\\udcff.csv" in Page(build_report(odd).encode("utf-8").decode()).text


def test_relative_paths_from_the_current_folder_then_the_csvs(tmp_path, monkeypatch):
    results = tmp_path / "results"
    (a,) = solid_images(results / "photos", 1)  # written as 'photos/img000.png' by a run inside results/
    here = tmp_path / "elsewhere"
    (b,) = solid_images(here / "shots", 1)  # written as 'shots/img000.png' by a run in the folder used now
    source = write_scores(results / "scores.csv", [score_fields("photos/img000.png", 80.0, 1.0, None),
                                                   score_fields("shots/img000.png", 70.0, 1.0, None)])  # fmt: skip
    monkeypatch.chdir(here)
    page = Page(build_report(source))
    assert [image["alt"] for image in page.images] == ["photos/img000.png", "shots/img000.png"]
    assert not page.placeholders


def test_the_cap_keeps_a_large_csv_small_and_says_what_it_left_out(runner, tmp_path):
    paths = solid_images(tmp_path / "photos", 30, size=(20, 20))
    rows = [score_fields(str(p), float(i), 1.0, None) for i, p in enumerate(paths)]
    source = write_scores(tmp_path / "scores.csv", rows)
    result = runner.invoke(app, ["report", str(source), "-o", "-", "--max-images", "3"])
    assert result.exit_code == 0, result.output
    page = Page(result.stdout)
    # best 3 (MOS 29, 28, 27), then the worst 3 (2, 1, 0), one ranking read top to bottom
    assert [image["alt"] for image in page.images] == [str(paths[i]) for i in (29, 28, 27, 2, 1, 0)]
    assert [caption.split()[0] for caption in page.captions] == ["#1", "#2", "#3", "#28", "#29", "#30"]
    assert "24 image(s) in the middle are left out of this page (--max-images 3" in page.text

    # 100,000 rows (the images need not exist: only the ones shown are opened), a quarter of them errors.
    big = tmp_path / "big.csv"
    with big.open("w", newline="", encoding="utf-8") as handle:
        writer = DictWriter(handle, score_columns())
        writer.writeheader()
        for n in range(100_000):
            failed = n % 4 == 0
            writer.writerow(score_fields(f"set/{n:06d}.jpg", None if failed else (n * 7919) % 10_000 / 100, 3.0,
                                         "file not found" if failed else None))  # fmt: skip
    text = build_report(big, max_images=10)
    page = Page(text)
    assert len(text) < 200_000
    assert len(page.placeholders) == 20 and len(page.cells) == 3 * MAX_FAILED_LISTED
    assert f"{25_000 - MAX_FAILED_LISTED} more not listed" in page.text
    assert "74980 image(s) in the middle are left out" in page.text
    page = Page(build_report(big, max_images=0))
    assert not page.placeholders and "75000 image(s) not shown (--max-images 0)" in page.text


# -- ranking -----------------------------------------------------------------------------------------------------
def test_ranking_report_from_rank_from_pairs(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = solid_images(tmp_path / "images", 3)
    names = [f"images/{p.name}" for p in paths]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "a,b,p_a_better,better,error\n"
        f"{names[2]},{names[0]},0.9,a,\n{names[0]},{names[1]},0.8,a,\n{names[2]},{names[1]},0.95,a,\n"
        f"{names[1]},images/gone.png,,,file not found\n"
    )
    assert runner.invoke(app, ["rank", "--from-pairs", str(pairs), "-o", "ranking.csv", "--show", "0"]).exit_code == 3
    import csv

    with open("ranking.csv", encoding="utf-8") as handle:
        ranking = list(csv.DictReader(handle))
    result = runner.invoke(app, ["report", "ranking.csv", "-o", "ranking.html"])
    assert result.exit_code == 0, result.output
    page = Page(Path("ranking.html").read_text(encoding="utf-8"))
    assert [image["alt"] for image in page.images] == [row["path"] for row in ranking[:3]]
    assert [Path(image["alt"]).name for image in page.images] == ["img002.png", "img000.png", "img001.png"]
    for image, i in zip(page.images, (2, 0, 1), strict=True):
        assert close(thumbnail(image["src"]).getpixel((10, 10)), colour(i))
    top = ranking[0]
    assert page.captions[0].startswith(
        f"#1 strength {float(top['strength']):.3f} ± {float(top['se']):.3f}, 2 comparisons, win rate "
    )
    assert page.cells == ["5", ranking[3]["path"], "not compared: file not found"]
    assert "by rank, best first" in page.text and "Not ranked (1)" in page.text
    assert len(svgs(Path("ranking.html").read_text(encoding="utf-8"))) == 1


# -- bench -------------------------------------------------------------------------------------------------------
def bench_predictions(root: Path, names: list[str]) -> Path:
    """Predictions for every image of ``names`` as vcritic score writes them: the truth, bent and shuffled a bit."""
    from vcritic.evaluation import bench

    rows = []
    for name in names:
        for k, record in enumerate(bench.prepare(name, root, split="all").records):
            rows.append(score_fields(str(record.path), min(100.0, record.mos * 0.8 + 5 + (k % 3) * 4), 2.0, None))
    return write_scores(root / "predictions.csv", rows)


def test_bench_reports_single_and_all(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_spaq(tmp_path / "iqa")
    make_koniq10k(tmp_path / "iqa")
    predictions = bench_predictions(tmp_path / "iqa", ["spaq", "koniq10k"])
    args = ["--root", "iqa", "--predictions", str(predictions), "--split", "all", "--pairs", "20"]
    assert runner.invoke(app, ["bench", "spaq", *args, "--out", "one"]).exit_code == 0
    assert runner.invoke(app, ["bench", "all", *args, "--out", "every"]).exit_code == 0

    result = runner.invoke(app, ["report", "one", "-o", "one.html"])
    assert result.exit_code == 0, result.output
    text = Path("one.html").read_text(encoding="utf-8")
    page = Page(text)
    metrics = json.loads(Path("one/metrics.json").read_text())
    mos = metrics["mos"]
    numbers = [mos["srcc"], mos["plcc"], mos["plcc_logistic"], mos["krcc"], metrics["pair_ranking"]["score_difference"]]
    assert page.cells[:8] == ["SPAQ", "all", "12 of 12", *(f"{value:.3f}" for value in numbers)]
    assert page.cells[8:10] == ["-", "0.844/0.852"]  # no direct pairs without a model; the paper's numbers
    (plot,) = svgs(text)
    assert len(list(plot.iter(f"{SVG}circle"))) == 12
    assert len(list(plot.iter(f"{SVG}polyline"))) == 1  # the fitted logistic
    assert not page.images

    assert runner.invoke(app, ["report", "every", "-o", "every.html"]).exit_code == 0
    text = Path("every.html").read_text(encoding="utf-8")
    page = Page(text)
    assert [page.cells[k] for k in (0, 10)] == ["KonIQ-10k", "SPAQ"]
    assert [len(list(plot.iter(f"{SVG}circle"))) for plot in svgs(text)] == [12, 12]


def test_bench_scatter_is_capped_and_plain_svg_is_well_formed():
    from vcritic.report.page import MAX_SCATTER_POINTS

    x = [i % 100 for i in range(3 * MAX_SCATTER_POINTS)]
    plot = ET.fromstring(svg.scatter(x, x, x_label="<predicted> & 'x'", y_label="\x01true", curve=lambda v: v))
    assert len(list(plot.iter(f"{SVG}circle"))) == len(x)
    labels = [t.text for t in plot.iter(f"{SVG}text")]
    assert "<predicted> & 'x'" in labels and "\ufffdtrue" in labels
    histogram = ET.fromstring(svg.histogram([0, 4.9, 5, 99, 100, 250, -3], low=0, high=100, x_label="MOS"))
    counts = {r.find(f"{SVG}title").text: r for r in histogram.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None}
    assert sorted(counts) == ["0-5: 3", "5-10: 1", "95-100: 3"]  # outside values go to the end bins


# -- refusals and output rules -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,p_a_better\nx.png,y.png,0.5\n", "is not a file vcritic report reads (columns: a, b, p_a_better)"),
        ("path,mos,scale,error\nx.png,abc,0-100,\n", "line 2: mos 'abc' is not a number"),
        ("path,mos,scale,error\nx.png,3,1-5,\n", "has rows whose scale is 1-5, not 0-100"),
        ("path,mos,error\nx.png,3\n", "line 2: 2 cells where the header has 3"),
        (b"\xff\xfe\x00binary", "is not a UTF-8 text CSV file"),
        ("", "is not a file vcritic report reads (columns: none)"),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path, capsys, content, message):
    source = tmp_path / "input.csv"
    (source.write_bytes if isinstance(content, bytes) else source.write_text)(content)
    assert main(["report", str(source), "-o", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_bad_folders_are_refused(tmp_path, capsys):
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 1
    assert "is a folder without metrics.json or summary.json" in capsys.readouterr().err
    (tmp_path / "metrics.json").write_text("{not json")
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing.csv"), "-o", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "a ranking CSV from `vcritic rank`" in err


def test_a_hand_edited_bench_folder_still_renders(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"title": "<Mine>", "mos": [1, 2], "paper": "none"}))
    page = Page(build_report(tmp_path))
    assert page.cells[:4] == ["<Mine>", "-", "- of -", "-"]
    assert "No predictions.csv in its folder: nothing to plot." in page.text


def test_output_is_written_whole_and_not_overwritten_by_default(tmp_path, capsys):
    (path,) = solid_images(tmp_path, 1)
    source = write_scores(tmp_path / "scores.csv", [score_fields(str(path), 50.0, 1.0, None)])
    out = tmp_path / "report.html"
    out.write_text("keep me")
    assert main(["report", str(source), "-o", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep me"
    assert main(["report", str(source), "-o", str(source), "--overwrite"]) == 1
    assert "is one of the inputs" in capsys.readouterr().err
    assert main(["report", str(source), "-o", str(tmp_path / "no" / "r.html")]) == 1
    assert "does not exist" in capsys.readouterr().err

    out.chmod(0o640)
    assert main(["report", str(source), "-o", str(out), "--overwrite"]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>") and (out.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img000.png", "report.html", "scores.csv"]  # no temp file
    assert main(["report", str(source), "-o", "-"]) == 0
    captured = capsys.readouterr()
    assert Page(captured.out).images[0]["alt"] == str(path) and "-> stdout" in captured.err
