"""Docs that cannot drift: the README's option and exit-code tables are generated from the options model and
cli/exits.py (braze_migrate/cli/reference.py), and its state-folder tree is checked against a real state
folder left by a backfill and a sync of the samples, then a dry run."""

from __future__ import annotations

import re
from pathlib import Path

from braze_migrate.cli.main import main
from braze_migrate.cli.reference import render
from braze_migrate.settings import LoadSettings, flag_options

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SAMPLES = ROOT / "data" / "samples"
TRANSIENT = re.compile(r"(-wal|-shm|-journal|\.tmp)$")


def tree_entries() -> list[tuple[str, bool]]:
    """(path pattern, always there) of each line of the README's state-folder tree."""
    text = README.read_text()
    block = text[text.index("## State folder"):]
    block = block[block.index("```\nstate/\n") + len("```\nstate/\n"):]
    block = block[:block.index("```")]
    return [(line.split()[0], "(when " not in line) for line in block.splitlines() if line.strip()]


def matcher(pattern: str) -> re.Pattern:
    """`<run>`/`<salt>`/`<name>`/`<time>` and `*` match one name part; a folder matches everything in it."""
    regex = re.escape(pattern).replace(re.escape("*"), "[^/]*")
    regex = re.sub(r"<[a-z]+>", "[^/]+", regex.replace("\\<", "<").replace("\\>", ">"))
    return re.compile(regex + (".*" if pattern.endswith("/") else "") + "$")


def test_the_generated_tables_are_current():
    text = README.read_text()
    assert render(text) == text, "run: python -m braze_migrate.cli.reference --write README.md"
    for name in flag_options("backfill"):
        assert f"`BRAZE_MIGRATE_{name.upper()}`" in text and f"--{name.replace('_', '-')}" in text


def test_every_option_of_the_model_is_documented_somewhere():
    docs = README.read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing = [n for n in LoadSettings.model_fields if f"BRAZE_MIGRATE_{n.upper()}" not in docs]
    assert not missing


def test_the_state_folder_tree_matches_a_real_state_folder(braze_env, tmp_path, capsys):
    state = tmp_path / "state"
    for argv in (["backfill", str(SAMPLES / "day1")], ["sync", str(SAMPLES / "day2")], ["plan", str(SAMPLES / "day2")]):
        assert main([*argv, "--state", str(state), "--json", *(["--no-prefect"] if argv[0] != "plan" else [])]) == 0
    capsys.readouterr()
    entries = tree_entries()
    files = [p.relative_to(state).as_posix() for p in state.rglob("*") if p.is_file() and not TRANSIENT.search(p.name)]
    undocumented = [f for f in files if not any(matcher(pattern).match(f) for pattern, _ in entries)]
    assert not undocumented, f"state files missing from the README's tree: {undocumented}"
    absent = [p for p, always in entries if always and not any(matcher(p).match(f) for f in files)]
    assert not absent, f"README tree lines the state folder does not have: {absent}"


def test_the_readme_names_every_dataset_and_the_key_permissions_they_need():
    from connectors.sources import DATASETS

    text = README.read_text()
    plan_step = text[text.index("1. **Plan.**"):text.index("2. **Apply.**")]
    assert all(f"`{name}`" in plan_step for name in DATASETS)
    assert all(p in text for p in ("users.track", "users.export.ids", "users.delete"))


def test_drifts_once_found_stay_gone():
    docs = {p.name: p.read_text() for p in (README, *(ROOT / "docs").glob("*.md"))}
    gone = ["sliding-window limiter",  # loads lease fixed windows (connectors/braze/ratelimit.py)
            "(`.csv.gz`) are not read",  # they are read (connectors/sources.py)
            "the Braze client and sandbox",  # the sandbox is a distribution of its own
            "Every option also reads",  # --json, --mapping, --no-prefect do not
            "without importing each other"]  # sources.py imports mapping, objectstore and sql
    assert not [(name, phrase) for name, text in docs.items() for phrase in gone if phrase in text]


def test_state_md_lists_every_exit_code():
    from braze_migrate.cli.exits import MEANINGS

    text = (ROOT / "docs" / "state.md").read_text()
    table = text[text.index("## Exit codes (every command)"):]
    assert [int(m) for m in re.findall(r"^\| (\d) \|", table, re.MULTILINE)] == sorted(MEANINGS)
