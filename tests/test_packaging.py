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
