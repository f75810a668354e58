"""The shape of the code, checked: one installed namespace, and layers that point one way."""

from __future__ import annotations

import ast
import collections
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("ragsync.streams", "ragsync.producers")
MAPPED = ("streams", "producers", "proto")  # top-level folders installed under ragsync (pyproject.toml)
# Only these may import a stage: they build and run the stages.
WIRING = ("ragsync.app", "ragsync.cli", "ragsync.__main__")  # modules, or packages of them


def test_ragsync_installs_beside_proto_plus_without_a_collision(tmp_path: Path) -> None:
    # Run away from the checkout, so that only what is installed is importable.
    check = (
        "import proto, ragsync.proto.coordinator_pb2 as pb; "
        "assert hasattr(proto, 'Message'), f'proto is not proto-plus but {proto.__file__}'; "
        "assert pb.DESCRIPTOR.services_by_name['CoordinatorService']; "
        "import importlib.util as u; "
        "assert all(u.find_spec(name) is None for name in ('streams', 'producers')), 'a top-level stage package'"
    )
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def _module(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[0] in MAPPED:
        parts.insert(0, "ragsync")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources() -> list[Path]:
    folders = [ROOT / "ragsync", ROOT / "streams", ROOT / "producers"]
    return [
        path
        for folder in folders
        for path in folder.rglob("*.py")
        if not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    ]


def _packages() -> set[str]:
    """Every package of the installed namespace, named as installed."""
    inits = [*(ROOT / "ragsync").rglob("__init__.py"), *(ROOT / name / "__init__.py" for name in MAPPED)]
    return {_module(init) for init in inits}


def test_layers_point_one_way() -> None:
    """The core imports no stage; streams and producers share only the core; only the app, the one-shot
    runner and the CLI import stages, and nothing imports them."""
    wrong = []
    for path in _sources():
        module = _module(path)
        in_stage = module.startswith(STAGES)
        for name in _imports(path):
            if name.startswith(STAGES) and not in_stage and not module.startswith(WIRING):
                wrong.append(f"{module} (core) imports the stage {name}")
            stage = next((s for s in STAGES if module.startswith(s)), None)
            if stage and name.startswith(STAGES) and not name.startswith(stage):
                wrong.append(f"{module} imports {name}: stages share only the core")
            if name.startswith(WIRING) and not module.startswith(WIRING):
                wrong.append(f"{module} imports {name}, which wires the stages")
    assert not wrong, "imports that run back up:\n" + "\n".join(sorted(wrong))


def test_the_packaging_lists_every_package_of_the_namespace() -> None:
    """pyproject.toml lists the packages (a find cannot see the mapped folders): a new one must be listed, or a
    wheel would install without it while the editable install still works."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert _packages() == listed


def test_no_two_modules_share_a_name() -> None:
    """A module's name says what it is wherever it is read: in a traceback, a log line's logger, an import."""
    modules = [path for path in (*_sources(), *(ROOT / "benchmarks").rglob("*.py")) if path.stem != "__init__"]
    names = collections.Counter(path.stem for path in modules)
    shared = sorted(str(path.relative_to(ROOT)) for path in modules if names[path.stem] > 1)
    assert not shared, f"modules that share a name: {shared}"


def test_nothing_imports_a_mapped_folder_as_a_top_level_package() -> None:
    """`streams.fetcher` would be a second copy of `ragsync.streams.fetcher`, with its own globals."""
    files = [*_sources(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in _imports(path)
        if name.split(".")[0] in MAPPED
    ]
    assert not wrong, wrong


# Settings become option objects in ragsync.app.options; the app holds them and the CLI reads them. The
# package's face re-exports the class for users.
READS_SETTINGS = ("ragsync.app", "ragsync.cli", "ragsync.settings")


def _imports_settings(path: Path) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "ragsync.settings"
        and any(alias.name == "Settings" for alias in node.names)
        for node in ast.walk(ast.parse(path.read_text()))
    )


def test_no_component_reads_settings_but_takes_option_objects() -> None:
    """Stages and the core take frozen, keyword-only option objects built in one module, never `Settings`."""
    wrong = [
        module
        for path in _sources()
        if _imports_settings(path) and not (module := _module(path)).startswith(READS_SETTINGS) and module != "ragsync"
    ]
    assert not wrong, f"modules that read Settings instead of taking option objects: {sorted(wrong)}"
    assert _imports_settings(ROOT / "ragsync" / "app" / "options.py")


def _area(module: str) -> str:
    """The part of the namespace a module belongs to: `ragsync.messaging`, `ragsync.events`, `ragsync.streams`."""
    return ".".join(module.split(".")[:2])


def test_the_parts_of_the_namespace_import_each_other_without_a_circle() -> None:
    """Subpackages and top-level modules form layers: if messaging uses runstate, runstate never uses messaging.
    A circle between two parts means one of them holds something that belongs lower down."""
    uses: dict[str, set[str]] = collections.defaultdict(set)
    for path in _sources():
        area = _area(_module(path))
        uses[area] |= {_area(name) for name in _imports(path) if name.startswith("ragsync.")} - {area, "ragsync"}
    circles = [f"{a} <-> {b}" for a in sorted(uses) for b in sorted(uses[a]) if a < b and a in _reach(uses, b)]
    assert not circles, f"parts that import each other, directly or through others: {circles}"


def _reach(uses: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for used in uses.get(todo.pop(), set()) - seen:
            seen.add(used)
            todo.append(used)
    return seen
