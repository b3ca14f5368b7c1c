"""Every Python example in the README runs as written (in a fresh directory, one block at a
time, each block in its own namespace), and prints what it says it prints: every comment
``# -> text`` of a block is text its output must contain, and every block that runs has one.

A block whose first line is ``# not run by the tests: <reason>`` is skipped (needs data the
test run lacks, or minutes of CPU); the reason is shown."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
SKIP = "# not run by the tests:"
EXPECT = re.compile(r"#\s*->\s*(.+?)\s*$", flags=re.M)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    code = BLOCKS[index]
    if code.lstrip().startswith(SKIP):
        pytest.skip(code.lstrip().splitlines()[0][len(SKIP) :].strip())
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out):
        warnings.simplefilter("ignore")
        exec(compile(code, f"README block {index}", "exec"), {"__name__": "__readme__"})
    printed = out.getvalue()
    expected = EXPECT.findall(code)
    assert expected, f"README block {index} says nothing it prints (add '# -> text')"
    missing = [text for text in expected if text not in printed]
    assert not missing, f"README block {index} did not print {missing}; it printed:\n{printed}"


def test_readme_has_examples():
    assert len(BLOCKS) >= 5
