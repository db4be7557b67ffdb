"""What `pip install .` installs is enough to run every module it ships."""

import ast
import importlib.metadata
import os
import re
import sys
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("mwnet_tf", "zoo")


def _imported_top_level_modules(root):
    """Top-level names of every module imported anywhere below `root`,
    function-level (lazy) imports included."""
    names = set()
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(folder, name)) as file:
                tree = ast.parse(file.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names


def _declared_distributions():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as file:
        project = tomllib.load(file)["project"]
    return {_normalise(re.split(r"[<>=!~;\[ ]", requirement)[0])
            for requirement in project["dependencies"]}


def _normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_third_party_module_is_a_declared_dependency():
    imported = set()
    for package in PACKAGES:
        imported |= _imported_top_level_modules(os.path.join(REPO, package))
    third_party = sorted(imported - set(sys.stdlib_module_names)
                         - set(PACKAGES))
    providers = importlib.metadata.packages_distributions()
    declared = _declared_distributions()
    undeclared = {}
    for module in third_party:
        distributions = {_normalise(d) for d in providers.get(module, [])}
        assert distributions, f"{module} is imported but not installed"
        if not distributions & declared:
            undeclared[module] = sorted(distributions)
    assert not undeclared, (
        f"imported by the package but not in pyproject.toml's dependencies: "
        f"{undeclared}; `pip install .` would leave them out.")


def test_the_check_sees_lazy_imports():
    # keras_cv is imported inside a function (the audit's gallery): the
    # defect this file guards against.
    assert "keras_cv" in _imported_top_level_modules(
        os.path.join(REPO, "mwnet_tf"))


# The layers of WORKSPACE.md ("The layers: what may import what"): each
# layer and the layers it may import (its own included). Arrows point down
# only: the library, data/, zoo/ and label_audit.py import no command.
MAY_IMPORT = {
    "library": {"library"},
    "data": {"data", "library"},
    "zoo": {"zoo", "library"},
    "label_audit": {"label_audit", "data", "library"},
    "runner": {"runner", "label_audit", "data", "zoo", "library"},
    "entry": {"entry", "runner", "label_audit", "data", "zoo", "library"},
    # Run by tests and bench/ only: starts commands, imports none of them.
    "testing": {"testing"},
}


def _layer(module):
    """The layer of a dotted module name; None outside the repository."""
    parts = module.split(".")
    if parts[0] == "zoo":
        return "zoo"
    if parts[0] != "mwnet_tf":
        return None
    if len(parts) == 1:
        return "library"
    return {"runner": "runner", "testing": "testing", "data": "data",
            "label_audit": "label_audit", "main": "entry",
            "audit": "entry"}.get(parts[1], "library")


def _module_name(path, root=REPO):
    parts = os.path.relpath(path, root)[:-len(".py")].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute_imports(path, root=REPO):
    """Every module `path` (below `root`) imports, anywhere in it
    (function-level imports too), relative imports resolved, and
    `mwnet_tf.x.y` attribute chains (`mwnet_tf.__getattr__` imports them
    on use)."""
    with open(path) as file:
        tree = ast.parse(file.read())
    package = _module_name(path, root).split(".")
    if not path.endswith("__init__.py"):
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]
                            + ([node.module] if node.module else [])
                            ) if node.level else node.module
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Attribute):
            chain = [node.attr]
            value = node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in PACKAGES:
                yield ".".join([value.id] + chain[::-1])


def _modules_by_layer():
    layers = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    layers.setdefault(_layer(_module_name(path)),
                                      []).append(path)
    return layers


def test_each_layer_imports_only_the_layers_below_it():
    layers = _modules_by_layer()
    assert set(layers) == set(MAY_IMPORT)  # Every file has a layer.
    assert len(layers["library"]) > 15 and len(layers["runner"]) > 5
    assert len(layers["entry"]) >= 3  # main.py, audit/__main__.py, ...
    crossings = []
    for layer, paths in layers.items():
        for path in paths:
            crossings += [
                f"{os.path.relpath(path, REPO)} ({layer}) imports {module} "
                f"({_layer(module)})"
                for module in _absolute_imports(path)
                if _layer(module) not in MAY_IMPORT[layer] | {None}]
    assert not crossings, crossings


def test_the_layer_check_sees_what_it_must_refuse(tmp_path):
    # The upward imports this layering removed, written the ways the
    # package writes imports: each must be seen.
    upward = tmp_path / "mwnet_tf" / "label_audit.py"
    upward.parent.mkdir()
    for line, layer in (("from mwnet_tf.runner import experiment", "runner"),
                        ("    from mwnet_tf import runner", "runner"),
                        ("from . import main", "entry"),
                        ("from .audit import label_audit", "entry"),
                        ("import mwnet_tf.audit.label_audit", "entry"),
                        ("x = mwnet_tf.runner.main", "runner")):
        upward.write_text(f"import mwnet_tf\nif True:\n    {line.strip()}\n")
        imported = {_layer(module) for module in _absolute_imports(
            str(upward), root=str(tmp_path))}
        assert layer in imported, line
        assert layer not in MAY_IMPORT["label_audit"]


def test_the_audit_command_lives_with_the_training_command():
    # python -m mwnet_tf.audit is an entry beside mwnet_tf/main.py; the
    # command is the runner's, the library it calls the library's.
    audit = os.path.join(REPO, "mwnet_tf", "audit")
    assert sorted(n for n in os.listdir(audit) if n.endswith(".py")) == [
        "__init__.py", "__main__.py", "label_audit.py"]
    assert "mwnet_tf.runner.audit_command" in set(
        _absolute_imports(os.path.join(audit, "__main__.py")))
    assert "mwnet_tf.label_audit" in set(
        _absolute_imports(os.path.join(audit, "label_audit.py")))
    for name in ("audit_command.py", "main.py"):
        assert os.path.isfile(os.path.join(REPO, "mwnet_tf", "runner", name))
