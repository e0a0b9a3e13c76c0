"""The package's layers point down: each folder of ``vcritic/`` is a layer, imports only the layers under it, the
command line is on top, and ``vcritic --help`` is light enough to answer at once."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import vcritic

PACKAGE = Path(vcritic.__file__).parent
HEAVY = ("torch", "numpy", "transformers", "PIL", "scipy", "huggingface_hub")
COMMANDS = [[], ["score"], ["compare"], ["rank"], ["describe"], ["chat"], ["bench"], ["calibrate"], ["report"],
            ["download"], ["train"], ["models"], ["data", "build"]]  # fmt: skip
# Run in a fresh interpreter: every command's help, then the top-level packages imported by then.
HELP = """
import contextlib, io, json, sys
from vcritic.cli.app import main
helps = []
for command in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        helps.append((main([*command, "--help"]), out.getvalue()))
print(json.dumps({"helps": helps, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function bodies and TYPE_CHECKING blocks included), as absolute
    dotted names."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per dot beyond the first
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


# The layers, bottom up (docs/development/architecture.md). A folder imports its own modules and folders of a lower
# rank; two folders of one rank are independent of each other. errors.py and testing.py are modules at the top level.
LAYERS = {
    "errors": 0,
    "base": 1,
    "readout": 2,
    "model": 3,
    "datasets": 3,
    "testing": 3,
    "engine": 4,
    "inference": 5,
    "pipeline": 6,
    "evaluation": 7,
    "report": 8,
    "data": 8,
    "training": 9,
    "serve": 10,
    "cli": 11,
}


def runtime_imports(path: Path) -> list[tuple[str, int]]:
    """The vcritic modules ``path`` imports when it runs (function bodies included; ``if TYPE_CHECKING:`` blocks,
    which only name types for annotations, left out), with their line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    annotations_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            annotations_only.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    found = []
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("vcritic"):
            if node.module == "vcritic":
                found += [(f"vcritic.{alias.name}", node.lineno) for alias in node.names]
            else:
                found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("vcritic")]
    return found


def test_every_folder_and_top_level_module_is_a_known_layer():
    layers = {path.stem for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    layers |= {path.stem for path in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert layers == set(LAYERS)


def test_layers_import_only_the_layers_under_them():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        layer = relative.parts[0].removesuffix(".py")
        if layer in ("__init__", "__main__"):  # the public API's lazy names and the command's entry point
            continue
        for name, line in runtime_imports(path):
            target = name.split(".")[1] if name.count(".") else ""
            if target in ("", "__version__", layer):
                continue
            if LAYERS[target] >= LAYERS[layer]:
                offenders.append(f"{relative}:{line} ({layer}) imports {name} ({target})")
    assert not offenders, "imports that point up or sideways:\n" + "\n".join(offenders)


def test_the_layer_rule_sees_an_import_that_points_up(tmp_path):
    # The rule above is only as good as this: an upward import inside a function is found, one under TYPE_CHECKING
    # is not.
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vcritic.cli import app\n"
        "def f():\n    from vcritic.serve.service import build_app\n"
    )
    assert runtime_imports(module) == [("vcritic.serve.service", 5)]


def test_the_import_walker_sees_imports_in_function_bodies_and_relative_ones(tmp_path):
    # The rule below is only as good as this walker: an import it missed would pass unseen.
    names = imported_modules(PACKAGE / "model" / "hub.py")
    assert "vcritic.base.progress.progress_enabled" in names  # imported inside a function
    assert "vcritic.errors.VcriticError" in names


def test_no_module_outside_the_cli_imports_the_cli():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "cli" or relative == Path("__main__.py"):  # __main__ is the command's entry point
            continue
        cli = sorted(
            name for name in imported_modules(path) if name == "vcritic.cli" or name.startswith("vcritic.cli.")
        )
        if cli:
            offenders.append(f"{relative}: {', '.join(cli)}")
    assert not offenders, "library modules importing the command line:\n" + "\n".join(offenders)


def test_help_imports_no_model_or_array_library():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", HELP, json.dumps(COMMANDS)], capture_output=True, text=True,
                            env=env, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert [code for code, _ in found["helps"]] == [0] * len(COMMANDS)
    assert all("Usage" in text for _, text in found["helps"])
    assert "vcritic" in found["modules"] and "typer" in found["modules"]  # the check sees what was imported
    assert [name for name in HEAVY if name in found["modules"]] == []


def test_commands_do_not_import_each_other():
    # What two commands share lives in a private module under cli/ (cli/_pairs.py, cli/_answers.py, ...).
    commands = {path.stem for path in (PACKAGE / "cli").glob("*.py") if not path.stem.startswith("_")} - {"app"}
    offenders = []
    for name in sorted(commands):
        others = {f"vcritic.cli.{other}" for other in commands - {name}}
        found = sorted(imported_modules(PACKAGE / "cli" / f"{name}.py") & others)
        if found:
            offenders.append(f"cli/{name}.py: {', '.join(found)}")
    assert len(commands) >= 10 and not offenders, offenders


def test_report_and_bench_read_the_schema_not_the_scoring_engine():
    # The report never runs a model; bench runs one only in predict(), which imports the engine where it is used.
    for path in sorted((PACKAGE / "report").glob("*.py")):
        assert "vcritic.pipeline.scoring" not in imported_modules(path), path.name
    module_level = [node for node in ast.parse((PACKAGE / "evaluation" / "bench.py").read_text(encoding="utf-8")).body
                    if isinstance(node, ast.Import | ast.ImportFrom)]  # fmt: skip
    assert "vcritic.readout.schema" in {node.module for node in module_level if isinstance(node, ast.ImportFrom)}
    assert "vcritic.pipeline.scoring" not in {node.module for node in module_level if isinstance(node, ast.ImportFrom)}
