"""Every ``psa-zoo`` command line written in README.md and docs/*.md is one the command line accepts (the
command, its options and their values parse), and README's zoo table is the registry's."""

from __future__ import annotations

import re
import shlex

import pytest

from psa_zoo.cli import build_parser
from tests.conftest import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
_SCRIPT = re.compile(r"scripts/(\w+)\.py")


def _shell_lines(text: str) -> list[str]:
    """The lines of the bash code blocks, continuation backslashes joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lines.append(line)
    return lines


def _commands(path) -> list[list[str]]:
    """``psa-zoo`` argument lists found in ``path``: ``psa-zoo X ...``, ``-m psa_zoo.cli X ...`` and
    ``scripts/x_y.py ...`` (the script of command x-y)."""
    found = []
    for line in _shell_lines(path.read_text()):
        for part in re.split(r"&&|;", line):
            part = re.sub(r"\[(--[^\]]*)\]", r"\1", part)  # usage notation "[--opt X]": check the option too
            words = shlex.split(part, comments=True)
            for i, word in enumerate(words):
                if word in ("psa-zoo", "psa_zoo.cli"):
                    found.append(words[i + 1 :])
                    break
                script = _SCRIPT.fullmatch(word)
                if script:
                    found.append([script.group(1).replace("_", "-"), *words[i + 1 :]])
                    break
    return found


def _cases():
    commands = build_parser()._subparsers._group_actions[0].choices
    for path in DOCS:
        for args in _commands(path):
            if args and args[0] in commands:
                yield pytest.param(args, id=f"{path.name}:{' '.join(args)[:60]}")


CASES = list(_cases())


def test_the_docs_hold_the_commands_users_run():
    names = {args[0] for args in (c.values[0] for c in CASES)}
    assert {"demo", "list", "info", "predict", "train-pose", "train-seg", "eval-pose", "eval-seg",
            "make-data", "convert", "bench-attn", "bench-train", "export"} <= names  # fmt: skip


@pytest.mark.parametrize("args", CASES)
def test_every_documented_command_parses(args):
    parsed = build_parser().parse_args(args)  # argparse exits (SystemExit) on an unknown option or value
    assert parsed.command == args[0]


def test_readme_zoo_table_is_the_registry():
    from psa_zoo.info import format_zoo_table, zoo_rows

    text = (REPO_ROOT / "README.md").read_text()
    table = text.split("<!-- zoo-table -->\n", 1)[1].split("\n\n", 1)[0]
    expected = format_zoo_table(zoo_rows(with_macs=False)).splitlines()
    written = table.splitlines()
    assert len(written) == len(expected)
    gmacs = _models_md_gmacs()
    for ours, want in zip(written[2:], expected[2:], strict=True):
        cells, want_cells = ours.split("|"), want.split("|")
        assert cells[:4] + cells[5:] == want_cells[:4] + want_cells[5:], ours
        assert float(cells[4]) == gmacs[cells[1].strip()], ours  # as docs/models.md (kept current by a test)


def _models_md_gmacs() -> dict[str, float]:
    rows = {}
    for line in (REPO_ROOT / "docs" / "models.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 8 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = float(cells[7])
    return rows


@pytest.mark.parametrize("task", ["pose", "seg"])
def test_training_md_recipe_tables_are_the_recipes(task):
    from psa_zoo.train.recipes import recipe_table

    text = (REPO_ROOT / "docs" / "training.md").read_text()
    table = text.split(f"<!-- recipes-{task} -->\n", 1)[1].split("\n\n", 1)[0]
    assert table == recipe_table(task)
