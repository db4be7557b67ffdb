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


# The layers of WORKSPACE.md: the library imports nothing of the runner, the
# audit's command, the test support or the zoo (the runner builds models
# from the zoo; the zoo may use the library).
UPPER_LAYERS = ("zoo", "mwnet_tf.runner", "mwnet_tf.audit.command",
                "mwnet_tf.testing", "mwnet_tf.main")
NOT_LIBRARY = ("runner", "testing", os.path.join("audit", "command.py"),
               os.path.join("audit", "__main__.py"), "main.py")


def _absolute_imports(path):
    with open(path) as file:
        tree = ast.parse(file.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_the_library_imports_no_upper_layer():
    root = os.path.join(REPO, "mwnet_tf")
    library_modules, crossings = 0, []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root)
            if not name.endswith(".py") or relative.startswith(NOT_LIBRARY):
                continue
            library_modules += 1
            crossings += [f"{relative} imports {module}"
                          for module in _absolute_imports(path)
                          if any(module == layer
                                 or module.startswith(layer + ".")
                                 for layer in UPPER_LAYERS)]
    assert library_modules > 20  # The walk found the library.
    assert not crossings, crossings
