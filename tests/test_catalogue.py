"""The formulations/ catalogue and the method registry stay in step: every registered method
(built in or registered later, e.g. by a plug-in) has a complete page, and every page names a
registered method."""

from __future__ import annotations

import re
from pathlib import Path

import calibopt as co
from calibopt.formulations import get_method, register_method, unregister_method

CATALOGUE = Path(__file__).resolve().parents[1] / "formulations"
SECTIONS = ("## Program", "## Solvers", "## Guarantee", "## Cost", "## References")


def page_problems() -> list[str]:
    """What is wrong between the registry and the catalogue, in words (empty when in step)."""
    problems = []
    for name in co.methods():
        method = get_method(name)
        page = CATALOGUE / method.catalogue
        if not page.is_file():
            problems.append(f"method {name!r} has no catalogue page {page.name}")
            continue
        text = page.read_text()
        if not text.startswith(f"# `{name}`"):
            problems.append(f"{page.name} must start with the method name: # `{name}`")
        problems += [f"{page.name} lacks {s!r}" for s in SECTIONS if s not in text]
        problems += [f"{page.name} omits alias {a!r}" for a in method.aliases if a not in text]
    owned = {get_method(name).catalogue for name in co.methods()}
    for page in sorted(CATALOGUE.glob("*.md")):
        if page.name == "README.md":
            continue
        title = re.match(r"# `([^`]+)`", page.read_text())
        if page.name not in owned:
            problems.append(f"page {page.name} belongs to no registered method")
        elif title is None or title.group(1) not in co.methods():
            problems.append(f"page {page.name} is titled with no registered method name")
    return problems


def test_registry_and_catalogue_are_in_step():
    assert page_problems() == []


def test_the_check_fails_for_a_method_without_a_page():
    register_method(
        "no-page-method",
        catalogue="no-page-method.md",
        summary="test-only",
        guarantee="approximate",
        iterations="none",
        objective="none",
    )(lambda problem, *, solver=None: None)
    try:
        missing = "method 'no-page-method' has no catalogue page no-page-method.md"
        assert page_problems() == [missing]
    finally:
        unregister_method("no-page-method")
    assert "no-page-method" not in co.methods()
    assert page_problems() == []


def test_classical_methods_registered_with_aliases():
    assert {"linear", "raking", "logit", "truncated"} <= set(co.methods())
    assert get_method("chi2").name == "linear"
    assert get_method("entropy").name == "raking"
    table = co.method_table()
    assert set(table["method"]) == set(co.methods())
