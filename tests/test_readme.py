"""The README's Python examples keep working."""

import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")


@pytest.mark.slow
def test_readme_fit_example_runs(tmp_path, monkeypatch):
    with open(README) as file:
        blocks = re.findall(r"```python\n(.*?)```", file.read(), re.DOTALL)
    assert blocks, "README.md has no python example"
    monkeypatch.chdir(tmp_path)  # The example writes TensorBoard logs.
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["weights"].shape == (8,)
    assert namespace["curve"].shape == (50,)
    assert os.listdir(tmp_path / "logs")
    # The reuse of a learned V continues the example; V stays as learned.
    learned = [w.copy() for w in namespace["model"].weighting_net.get_weights()]
    exec(compile(blocks[1], "README.md", "exec"), namespace)
    for before, after in zip(learned,
                             namespace["fixed"].weighting_net.get_weights()):
        assert (before == after).all()
