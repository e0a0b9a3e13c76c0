"""The package's layers point down: the command line on top, the library under it never importing it, and
``vcritic --help`` light enough to answer at once."""

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


def test_the_import_walker_sees_imports_in_function_bodies_and_relative_ones(tmp_path):
    # The rule below is only as good as this walker: an import it missed would pass unseen.
    names = imported_modules(PACKAGE / "hub.py")
    assert "vcritic.progress.progress_enabled" in names  # imported inside a function
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
        assert "vcritic.scoring" not in imported_modules(path), path.name
    module_level = [node for node in ast.parse((PACKAGE / "bench.py").read_text(encoding="utf-8")).body
                    if isinstance(node, ast.Import | ast.ImportFrom)]  # fmt: skip
    assert "vcritic.schema" in {node.module for node in module_level if isinstance(node, ast.ImportFrom)}
    assert "vcritic.scoring" not in {node.module for node in module_level if isinstance(node, ast.ImportFrom)}
