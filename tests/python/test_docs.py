"""Runs every ```python block of docs/PYTHON.md, in order, in one namespace,
in a scratch folder holding a tiny base/ and its fine-tune ft/."""
import os
import re

from conftest import ROOT


def test_python_md_examples(tiny, monkeypatch):
    root, _, _ = tiny
    text = open(os.path.join(ROOT, "docs", "PYTHON.md"), encoding="utf-8").read()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) >= 5
    monkeypatch.chdir(root)
    ns = {}
    for i, b in enumerate(blocks):
        exec(compile(b, "docs/PYTHON.md block %d" % (i + 1), "exec"), ns)
