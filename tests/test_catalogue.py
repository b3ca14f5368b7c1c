"""The formulations/ catalogue and the method registry stay in step."""

from __future__ import annotations

from pathlib import Path

import calibopt as co
from calibopt.formulations import get_method

CATALOGUE = Path(__file__).resolve().parents[1] / "formulations"
SECTIONS = ("## Program", "## Solvers", "## Guarantee", "## Cost", "## References")


def test_every_method_has_a_complete_page():
    for name in co.methods():
        method = get_method(name)
        page = CATALOGUE / method.catalogue
        assert page.is_file(), f"method {name!r} has no catalogue page {page}"
        text = page.read_text()
        assert text.startswith(f"# `{name}`"), f"{page.name} must start with the method name"
        for section in SECTIONS:
            assert section in text, f"{page.name} lacks {section!r}"
        for alias in method.aliases:
            assert alias in text, f"{page.name} does not mention alias {alias!r}"


def test_every_page_belongs_to_a_method():
    pages = {get_method(name).catalogue for name in co.methods()}
    orphans = sorted(p.name for p in CATALOGUE.glob("*.md") if p.name not in pages | {"README.md"})
    assert not orphans, f"catalogue pages without a registered method: {orphans}"


def test_classical_methods_registered_with_aliases():
    assert {"linear", "raking", "logit", "truncated"} <= set(co.methods())
    assert get_method("chi2").name == "linear"
    assert get_method("entropy").name == "raking"
    table = co.method_table()
    assert set(table["method"]) == set(co.methods())
