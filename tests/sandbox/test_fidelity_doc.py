"""docs/braze-fidelity.md stays true to the suite: every test it names exists, and every documented-example test
names its page and section."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _functions(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("test_*.py"):
        names |= {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
    return names


def test_every_test_the_fidelity_table_names_exists():
    doc = (ROOT / "docs" / "braze-fidelity.md").read_text()
    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b", doc))
    modules = {p.stem for p in (ROOT / "tests").rglob("test_*.py")}
    assert named - modules - _functions(ROOT / "tests") == set()


def test_every_documented_example_cites_its_page_and_section():
    tree = ast.parse((ROOT / "tests" / "sandbox" / "test_documented_examples.py").read_text())
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")):
        doc = ast.get_docstring(fn) or ""
        assert re.match(r"https://www\.braze\.com/docs/\S+/\n\"", doc), fn.name
