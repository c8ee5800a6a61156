"""The layering: the CLI and runners -> `pipeline` -> `serving` ->
`keras_mmoe`, never back up, and no program imports a test fixture.
keras_mmoe is plain Keras (no TFX, tf.Transform or TF-Text imports), and the
project's other packages use its public API (`keras_mmoe.__all__`) only."""

import ast
import os
import pathlib
import re
import subprocess
import sys
import types

import pytest

import keras_mmoe

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Not project source: the library itself, outputs, data and tool folders.
SKIPPED_DIRS = {"keras_mmoe", "output", "data", "build", "__pycache__"}


def test_keras_mmoe_imports_no_pipeline_packages():
    code = (
        "import sys, keras_mmoe\n"
        "bad = [m for m in ('tfx', 'tensorflow_transform', 'tensorflow_text')"
        " if m in sys.modules]\n"
        "print(bad)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def non_public_uses(source: str, public=frozenset(keras_mmoe.__all__)):
    """What `source` (Python) uses of keras_mmoe beyond `public` names.

    Flags `from keras_mmoe.x import ...` and `import keras_mmoe.x`, names
    imported from `keras_mmoe` that are not in `public`, and attributes of
    the package (`keras_mmoe.x`) that are not; an underscored attribute of
    an exported module (`keras_mmoe.losses._x`) too.
    """
    tree = ast.parse(source)
    found = []
    package = set()  # Local names of the keras_mmoe package.
    modules = set()  # Local names of its exported modules.
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "keras_mmoe":
                    package.add(alias.asname or alias.name)
                elif alias.name.startswith("keras_mmoe."):
                    found.append(f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if (node.module or "").startswith("keras_mmoe."):
                found.append(f"from {node.module} import ...")
            elif node.module == "keras_mmoe":
                for alias in node.names:
                    if alias.name not in public:
                        found.append(f"from keras_mmoe import {alias.name}")
                    elif isinstance(
                        getattr(keras_mmoe, alias.name, None), types.ModuleType
                    ):
                        modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = [node.attr]
        value = node.value
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        if not isinstance(value, ast.Name):
            continue
        if (
            value.id in package
            and chain[0] not in public
            and not chain[0].startswith("__")
        ):
            found.append(f"{value.id}.{chain[0]}")
        elif value.id in package | modules and any(
            a.startswith("_") and not a.startswith("__") for a in chain
        ):
            found.append(".".join([value.id, *chain]))
    return found


def _project_sources():
    """{path relative to the root: Python source} outside keras_mmoe/,
    including the Markdown files' Python examples."""
    sources = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".")
            and not d.endswith(".egg-info")
            and d not in SKIPPED_DIRS
        ]
        for name in files:
            path = pathlib.Path(folder, name)
            relative = str(path.relative_to(ROOT))
            if name.endswith(".py"):
                sources[relative] = path.read_text()
            elif name.endswith(".md"):
                blocks = re.findall(
                    r"```python\n(.*?)```", path.read_text(), re.S
                )
                for i, block in enumerate(blocks):
                    sources[f"{relative} example {i}"] = block
    return sources


def test_the_project_uses_only_keras_mmoe_public_names():
    sources = _project_sources()
    # The walk reaches every package that builds on keras_mmoe.
    for package in ("pipeline", "serving", "benchmarks", "tests"):
        assert any(p.startswith(f"{package}/") for p in sources), package
    assert "README.md example 0" in sources
    found = {
        path: uses
        for path, source in sources.items()
        if (uses := non_public_uses(source))
    }
    assert not found, (
        "Outside keras_mmoe/, use `import keras_mmoe` or `from keras_mmoe "
        f"import X` with X in keras_mmoe.__all__. Found: {found}"
    )


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from keras_mmoe import MMoE, Task", []),
        ("import keras_mmoe\nkeras_mmoe.MMoE, keras_mmoe.__version__", []),
        ("from keras_mmoe import losses\nlosses.masked_loss_for", []),
        ("import keras_mmoe.mmoe", ["import keras_mmoe.mmoe"]),
        (
            "from keras_mmoe.mmoe import MMoE",
            ["from keras_mmoe.mmoe import ..."],
        ),
        (
            "from keras_mmoe import MMoE, _testing",
            ["from keras_mmoe import _testing"],
        ),
        ("import keras_mmoe as km\nkm.experts", ["km.experts"]),
        (
            "from keras_mmoe import losses as L\nL._private",
            ["L._private"],
        ),
        ("from pipeline import _private\nimport keras", []),
    ],
)
def test_non_public_uses_flags_private_names(source, expected):
    assert non_public_uses(source, frozenset({"MMoE", "Task", "losses"})) == (
        expected
    )


# Who may import whom: the CLI and runners (in `pipeline`) -> `pipeline` ->
# `serving` -> `keras_mmoe`. `benchmarks` and `tests` sit on top.
FORBIDDEN = {
    "keras_mmoe": {"pipeline", "serving", "benchmarks"},
    "serving": {"pipeline", "benchmarks"},
    "pipeline": {"benchmarks"},
}
FIXTURES = {"pipeline.testing", "serving.testing", "keras_mmoe._testing"}


def _is_test_file(path: pathlib.Path) -> bool:
    return (
        path.name.endswith("_test.py")
        or path.name in ("testing.py", "_testing.py", "conftest.py")
        or path.parts[0] == "tests"
    )


def _imported_modules(source: str) -> set[str]:
    """Every module an `import` names, at any depth of the file; for
    `from a import b`, both `a` and `a.b` (b may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif (
            isinstance(node, ast.ImportFrom) and node.module and not node.level
        ):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def layering_violations(root: pathlib.Path) -> list[str]:
    """`path: imports module` lines for every import against the layering."""
    problems = []
    for package in (*FORBIDDEN, "benchmarks"):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            modules = _imported_modules(path.read_text())
            for module in sorted(modules):
                top = module.split(".")[0]
                if top in FORBIDDEN.get(package, ()):
                    problems.append(f"{relative}: imports {module}")
                elif not _is_test_file(relative) and (
                    module in FIXTURES or module.endswith("_test")
                ):
                    problems.append(f"{relative}: imports fixture {module}")
    return problems


def test_imports_follow_the_layering():
    assert layering_violations(ROOT) == []


def test_layering_check_finds_upward_and_fixture_imports(tmp_path):
    files = {
        "keras_mmoe/layer.py": "import keras\n",
        "serving/export.py": "def f():\n    from pipeline import features\n",
        "serving/export_test.py": "from serving import testing\n",
        "pipeline/cli.py": (
            "from serving import testing\nimport serving.export\n"
        ),
        "pipeline/model_test.py": "from pipeline import testing\n",
        "benchmarks/speed.py": "from pipeline.model_test import _config\n",
    }
    for name, source in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(source)
    assert layering_violations(tmp_path) == [
        "serving/export.py: imports pipeline",
        "serving/export.py: imports pipeline.features",
        "pipeline/cli.py: imports fixture serving.testing",
        "benchmarks/speed.py: imports fixture pipeline.model_test",
    ]
