"""The package's layers point down: each folder of ``vcritic/`` is a layer, imports only the layers under it, the
command line is on top, and ``vcritic --help`` is light enough to answer at once."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from support.processes import process_env

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


def runtime_import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of ``tree`` that run (function bodies included; ``if TYPE_CHECKING:`` blocks, which only
    name types for annotations, left out)."""
    annotations_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            annotations_only.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in annotations_only]  # fmt: skip


def runtime_imports(path: Path) -> list[tuple[str, int]]:
    """The vcritic modules ``path`` imports when it runs (function bodies included; ``if TYPE_CHECKING:`` blocks,
    which only name types for annotations, left out), with their line numbers."""
    found = []
    for node in runtime_import_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
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


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the module at ``path`` in the package at ``root``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_of(root: Path) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """Each module of the package at ``root`` -> the package's modules it imports when it runs
    (:func:`runtime_import_nodes`), each with the line of its first import. ``from a.b import c`` points at the module
    a.b.c where there is one, else at a.b."""
    paths = modules_of(root)
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in runtime_import_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the package, one level up per dot beyond the first
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{base}" if base else parent
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base for alias in node.names]
            for target in targets:
                while target and target not in paths:  # a name inside a module, or a module outside the package
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle, as its modules with the first repeated at the end, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        path.append(module)
        for target in graph[module]:
            if target in path:
                return [*path[path.index(target) :], target]
            if target not in done and (found := visit(target)):
                return found
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done and (found := visit(module)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    # Imports in function bodies count: a cycle hidden in a function is still two modules that need each other.
    graph = import_graph(PACKAGE)
    cycle = find_cycle(graph)
    steps = [f"{a} (line {graph[a][b]}) imports {b}" for a, b in zip(cycle, cycle[1:], strict=False)] if cycle else []
    assert cycle is None, "an import cycle: " + " -> ".join(cycle) + "\n" + "\n".join(steps)


def test_the_cycle_check_sees_a_cycle_through_a_function_body(tmp_path):
    # The check above is only as good as this: a cycle closed inside a function is found, one closed only under
    # TYPE_CHECKING is not.
    package = tmp_path / "vcritic"
    (package / "sub").mkdir(parents=True)
    for name, text in {
        "__init__.py": "",
        "a.py": "from vcritic.sub import b\n",
        "sub/__init__.py": "",
        "sub/b.py": "def f():\n    import vcritic.a\n",
        "c.py": "from vcritic import d\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vcritic.c import Thing\n",
    }.items():
        (package / name).write_text(text)
    assert find_cycle(import_graph(package)) == ["vcritic.a", "vcritic.sub.b", "vcritic.a"]
    (package / "sub" / "b.py").write_text("def f():\n    pass\n")
    assert find_cycle(import_graph(package)) is None


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reaches(root: Path) -> list[str]:
    """Where a module of the package at ``root`` uses a private name (``_name``) of another of its modules: imports it,
    reads it off an imported module, reads it off an object (a private name that only other modules define), or
    imports a private module from outside the folder it belongs to."""
    paths = modules_of(root)
    trees = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for name, path in paths.items()}
    owners: dict[str, set[str]] = {}  # private name -> the modules that define it (def, class, assignment)
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined = node.name
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined = node.attr
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined = node.id
            else:
                continue
            if is_private(defined):
                owners.setdefault(defined, set()).add(name)
    found = []
    for name, tree in trees.items():
        where = paths[name].relative_to(root.parent)
        package = name if paths[name].name == "__init__.py" else name.rpartition(".")[0]

        def outside_its_folder(module: str, package: str = package) -> bool:
            parts = module.split(".")
            folders = [".".join(parts[:i]) for i, part in enumerate(parts) if is_private(part)]
            return any(package != folder and not package.startswith(f"{folder}.") for folder in folders)

        modules = {}  # local name -> the package's module it is
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in paths:
                if outside_its_folder(node.module):
                    found.append(f"{where}:{node.lineno} imports from the private module {node.module}")
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    if target in paths:
                        modules[alias.asname or alias.name] = target
                        if outside_its_folder(target):
                            found.append(f"{where}:{node.lineno} imports the private module {target}")
                    elif is_private(alias.name):
                        found.append(f"{where}:{node.lineno} imports {alias.name} from {node.module}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in paths:
                        modules[alias.asname or alias.name] = alias.name
                        if outside_its_folder(alias.name):
                            found.append(f"{where}:{node.lineno} imports the private module {alias.name}")
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and is_private(node.attr)):
                continue
            base = ast.unparse(node.value)
            if base in modules or base in paths:
                found.append(f"{where}:{node.lineno} reads {node.attr} off the module {modules.get(base, base)}")
            elif base not in ("self", "cls") and owners.get(node.attr) and name not in owners[node.attr]:
                owner = ", ".join(sorted(owners[node.attr]))
                found.append(f"{where}:{node.lineno} uses {base}.{node.attr}, private to {owner}")
    return found


def test_no_module_uses_another_modules_private_names():
    # What two modules share is public, with a docstring that says what it is; there are no exceptions.
    found = private_reaches(PACKAGE)
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def test_the_private_name_check_sees_each_kind_of_reach(tmp_path):
    # The check above is only as good as this: each way of reaching in is found, and what is not reaching in (a
    # module's own names, self's attributes, another object of the module's own class, a private module used by its
    # own folder) is not.
    package = tmp_path / "vcritic"
    (package / "cli").mkdir(parents=True)
    for name, text in {
        "__init__.py": "",
        "a.py": "_LIMIT = 3\ndef _helper():\n    pass\nclass Box:\n    def __init__(self):\n        self._items = []\n",
        "b.py": (
            "import vcritic.a as a\nfrom vcritic.a import _LIMIT, Box\nfrom vcritic.cli._opts import x\n"
            "def f(box: Box):\n    a._helper()\n    return box._items, _LIMIT\n"
            "class Own:\n    def __init__(self):\n        self._x = 1\n    def same(self, other):\n"
            "        return self._x == other._x\n"
        ),
        "cli/__init__.py": "",
        "cli/_opts.py": "x = 1\n",
        "cli/cmd.py": "from vcritic.cli._opts import x\nfrom vcritic.cli import _opts\n",
    }.items():
        (package / name).write_text(text)
    assert sorted(private_reaches(package)) == [
        "vcritic/b.py:2 imports _LIMIT from vcritic.a",
        "vcritic/b.py:3 imports from the private module vcritic.cli._opts",
        "vcritic/b.py:5 reads _helper off the module vcritic.a",
        "vcritic/b.py:6 uses box._items, private to vcritic.a",
    ]


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
    env = process_env()
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
