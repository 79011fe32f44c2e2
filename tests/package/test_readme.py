"""The README's usage example must run as written."""

import pathlib
import re

from helpers import require_optional

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_blocks_run():
    # Every ```python block, executed in order in one namespace, as a user
    # pasting them into a session would.
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    for code in blocks:
        # torch is optional: its block needs it (and CI=true demands it).
        if "import torch" in code:
            require_optional("torch")
        exec(compile(code, str(README), "exec"), namespace)
