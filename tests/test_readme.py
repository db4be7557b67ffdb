"""The README's Python examples keep working, without warnings."""

import os
import re
import warnings

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
_OURS = tuple(os.path.join(REPO, package) + os.sep
              for package in ("mwnet_tf", "zoo"))


def _shown_to_users(warning):
    """Whether a user running the example would see this warning.

    Python hides DeprecationWarnings raised inside third-party code by
    default (TensorFlow raises some on NumPy 2); ours it would show.
    """
    if not issubclass(warning.category,
                      (DeprecationWarning, PendingDeprecationWarning)):
        return True
    return (warning.filename == "README.md"
            or warning.filename.startswith(_OURS))


def _exec_without_warnings(source, namespace):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(source, "README.md", "exec"), namespace)
    shown = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
             for w in caught if _shown_to_users(w)]
    assert not shown, "the README example warns:\n" + "\n".join(shown)


@pytest.mark.slow
def test_readme_fit_example_runs(tmp_path, monkeypatch):
    with open(README) as file:
        blocks = re.findall(r"```python\n(.*?)```", file.read(), re.DOTALL)
    assert blocks, "README.md has no python example"
    monkeypatch.chdir(tmp_path)  # The example writes TensorBoard logs.
    namespace = {}
    _exec_without_warnings(blocks[0], namespace)
    assert namespace["weights"].shape == (8,)
    assert namespace["curve"].shape == (50,)
    assert os.listdir(tmp_path / "logs")
    # The reuse of a learned V continues the example; V stays as learned.
    learned = [w.copy() for w in namespace["model"].weighting_net.get_weights()]
    _exec_without_warnings(blocks[1], namespace)
    for before, after in zip(learned,
                             namespace["fixed"].weighting_net.get_weights()):
        assert (before == after).all()
