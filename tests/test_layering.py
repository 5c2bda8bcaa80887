"""The layers of docs/architecture.md, read from the source with ``ast`` (nothing is imported).

- the library (``detector/``, ``concepts/``) never imports streamlit;
- no import cycle among the project's modules, imports inside functions included;
- the core of ``detector/`` (all but ``detector/cli.py`` and ``detector/commands/``) never
  imports ``concepts``, neither by an import statement nor by a module name in a string
  (``importlib.import_module("concepts.x")``);
- ``app.py`` and ``pages/*.py`` import from the project only ``ui`` modules.

Each check is a function of a source tree, so the tests at the bottom run it on small trees
written into ``tmp_path``, with and without a violation.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("detector", "concepts", "ui")
LIBRARY = ("detector", "concepts")
_MODULE_STRING = re.compile(r"^(detector|concepts|ui)(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class Import:
    """One import of a project module (or of streamlit) found in a source file."""

    source: str  # importing module, e.g. "detector.heads"
    target: str  # imported module, e.g. "detector.released" (a project module or "streamlit")
    file: str  # path relative to the tree's root
    line: int
    by_string: bool = False  # a module name in a string constant, not an import statement

    def __str__(self) -> str:
        how = " (module name in a string)" if self.by_string else ""
        return f"{self.file}:{self.line} {self.source} -> {self.target}{how}"


def project_modules(root: Path) -> dict[str, Path]:
    """Module name -> file for every module of the project under ``root``."""
    files = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))]
    files += sorted((root / "pages").glob("*.py"))
    if (root / "app.py").is_file():
        files.append(root / "app.py")
    modules = {}
    for path in files:
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that ``name`` (a module, or a name inside one) belongs to."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imported_names(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    return []


def imports(root: Path) -> list[Import]:
    """Every import of a project module or of streamlit, at any depth of every file."""
    modules = project_modules(root)
    found = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        rel = str(path.relative_to(root))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for node in ast.walk(tree):
            targets = set()
            for imported in _imported_names(node, package):
                if imported.split(".")[0] == "streamlit":
                    targets.add("streamlit")
                elif (owner := _owner(imported, modules)) is not None and owner != name:
                    targets.add(owner)
            # ``from pkg import mod`` names pkg and pkg.mod: keep the most specific
            targets = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
            found += [Import(name, t, rel, node.lineno) for t in sorted(targets)]
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _MODULE_STRING.match(node.value)
                and (owner := _owner(node.value, modules)) is not None
                and owner != name
                and node.value.count(".") > 0
            ):
                found.append(Import(name, owner, rel, node.lineno, by_string=True))
    return found


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return module.split(".")[0] in packages


def streamlit_in_library(root: Path) -> list[Import]:
    return [i for i in imports(root) if _in(i.source, LIBRARY) and i.target == "streamlit"]


def detector_core_to_concepts(root: Path) -> list[Import]:
    def core(module: str) -> bool:
        return (
            _in(module, ("detector",))
            and module != "detector.cli"
            and not (module + ".").startswith("detector.commands.")
        )

    return [i for i in imports(root) if core(i.source) and _in(i.target, ("concepts",))]


def pages_beyond_ui(root: Path) -> list[Import]:
    def page(module: str) -> bool:
        return module == "app" or module.startswith("pages.")

    return [
        i
        for i in imports(root)
        if page(i.source) and not i.by_string and i.target != "streamlit"
        if not _in(i.target, ("ui",))
    ]


def import_cycles(root: Path) -> list[list[Import]]:
    """Strongly connected groups of modules (import statements at any depth), as the
    imports that join each group's members; an empty list when the graph has no cycle."""
    edges: dict[str, list[Import]] = {}
    for i in imports(root):
        if not i.by_string and i.target != "streamlit":
            edges.setdefault(i.source, []).append(i)
    # Tarjan's algorithm, iterative (no recursion limit on deep graphs)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for start in sorted(project_modules(root)):
        if start in index:
            continue
        work = [(start, iter(edges.get(start, [])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                target = child.target
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(edges.get(target, []))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return [
        sorted(
            (i for m in sorted(g) for i in edges.get(m, []) if i.target in g),
            key=lambda i: (i.file, i.line),
        )
        for g in groups
    ]


def _listing(found) -> str:
    return "\n".join(str(i) for i in sorted(found, key=lambda i: (i.file, i.line, i.target)))


# -- the repository -----------------------------------------------------------------------


def test_library_never_imports_streamlit():
    found = streamlit_in_library(REPO)
    assert found == [], "detector/ and concepts/ must not import streamlit:\n" + _listing(found)


def test_no_import_cycles():
    cycles = import_cycles(REPO)
    message = "\n\n".join(f"cycle {i + 1}:\n{_listing(c)}" for i, c in enumerate(cycles))
    assert cycles == [], "import cycles among the project's modules:\n" + message


def test_detector_core_never_imports_concepts():
    found = detector_core_to_concepts(REPO)
    assert found == [], (
        "detector/ (but cli.py and commands/) must not import concepts:\n" + _listing(found)
    )


def test_pages_import_only_ui():
    found = pages_beyond_ui(REPO)
    assert found == [], "app.py and pages/ may import only ui modules:\n" + _listing(found)


# -- the checks themselves, on small trees --------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN = {
    "detector/__init__.py": "",
    "detector/metrics.py": "import numpy as np\n",
    "detector/heads.py": "from detector.metrics import ap\n\n\ndef f():\n"
    "    from . import metrics\n",
    "detector/cli.py": "import importlib\nNAME = 'concepts.report'\n",
    "detector/commands/__init__.py": "",
    "detector/commands/concepts.py": "from concepts.report import card\n",
    "concepts/__init__.py": "",
    "concepts/report.py": "from detector.heads import Head\n",
    "ui/__init__.py": "",
    "ui/view.py": "import streamlit as st\nfrom detector.heads import Head\n",
    "pages/detect.py": "import streamlit as st\nfrom ui.view import draw\nimport ui\n",
    "app.py": "import streamlit as st\nfrom ui import view\n",
}


def test_checks_pass_on_a_clean_tree(tmp_path):
    root = _tree(tmp_path, CLEAN)
    assert {(i.source, i.target) for i in imports(root)} >= {
        ("detector.heads", "detector.metrics"),
        ("concepts.report", "detector.heads"),
        ("pages.detect", "ui.view"),
        ("detector.cli", "concepts.report"),
    }
    assert streamlit_in_library(root) == []
    assert import_cycles(root) == []
    assert detector_core_to_concepts(root) == []
    assert pages_beyond_ui(root) == []


def test_streamlit_in_a_function_of_the_library_is_found(tmp_path):
    files = dict(CLEAN, **{"concepts/plot.py": "def draw():\n    from streamlit import write\n"})
    found = streamlit_in_library(_tree(tmp_path, files))
    assert [str(i) for i in found] == ["concepts/plot.py:2 concepts.plot -> streamlit"]


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    files = dict(CLEAN, **{"detector/metrics.py": "def f():\n    from .heads import Head\n"})
    cycles = import_cycles(_tree(tmp_path, files))
    assert [[str(i) for i in c] for c in cycles] == [
        [
            "detector/heads.py:1 detector.heads -> detector.metrics",
            "detector/heads.py:5 detector.heads -> detector.metrics",
            "detector/metrics.py:2 detector.metrics -> detector.heads",
        ]
    ]


def test_a_longer_cycle_is_one_group(tmp_path):
    files = dict(
        CLEAN,
        **{
            "ui/a.py": "import ui.b\n",
            "ui/b.py": "from ui import c\n",
            "ui/c.py": "from ui.a import x\n",
        },
    )
    cycles = import_cycles(_tree(tmp_path, files))
    assert len(cycles) == 1
    assert {i.source for i in cycles[0]} == {"ui.a", "ui.b", "ui.c"}


def test_detector_core_reaching_concepts_is_found_also_by_string(tmp_path):
    files = dict(
        CLEAN,
        **{
            "detector/train.py": "import importlib\n\n"
            "def f():\n    return importlib.import_module('concepts.report')\n",
            "detector/released.py": "def g():\n    from concepts import report\n",
        },
    )
    found = detector_core_to_concepts(_tree(tmp_path, files))
    assert sorted(str(i) for i in found) == [
        "detector/released.py:2 detector.released -> concepts.report",
        "detector/train.py:4 detector.train -> concepts.report (module name in a string)",
    ]


def test_a_page_importing_the_library_is_found(tmp_path):
    files = dict(
        CLEAN,
        **{
            "pages/data.py": "from ui.view import draw\nfrom detector.metrics import ap\n",
            "app.py": "import concepts.report\n",
        },
    )
    found = pages_beyond_ui(_tree(tmp_path, files))
    assert sorted(str(i) for i in found) == [
        "app.py:1 app -> concepts.report",
        "pages/data.py:2 pages.data -> detector.metrics",
    ]


def test_cli_help_loads_no_data_stack():
    """Command modules keep their library imports inside ``run`` (the CLI imports every one of
    them to build its parser): ``--help`` must not pull in torch, pandas, pyarrow, scipy or
    scikit-learn. Module-level imports of ``detector.store`` in one command made it do so."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['detector', '--help']\n"
        "try:\n"
        "    runpy.run_module('detector', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('torch', 'pandas', 'pyarrow', 'scipy', 'sklearn', 'open_clip')\n"
        "print('LOADED:' + ','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = [line for line in out.stdout.splitlines() if line.startswith("LOADED:")]
    assert loaded == ["LOADED:"], loaded
