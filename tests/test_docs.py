"""The README is a front door and the docs hold together: links resolve, named paths exist, no page repeats another."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 150

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
# A token that looks like a repo path: words, dots, dashes and slashes, no spaces, no URL scheme, no glob.
PATH_TOKEN = re.compile(r"(?<![\w./:@-])([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]*)*)(?![\w./*:@-])")


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, re.M)}


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Every relative link of page (file and #anchor) that does not resolve, as 'page: target'."""
    bad = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto: — not this repository's
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or not dest.resolve().is_relative_to(root.resolve()):
            bad.append(f"{page.name}: {target}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{page.name}: {target} (no such heading)")
    return bad


def top_level_names(root: Path = ROOT) -> set[str]:
    """The first path component of every tracked file (what a fresh clone has), or the folder's entries outside git."""
    try:
        files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {p.name for p in root.iterdir()}
    return {line.split("/")[0] for line in files.splitlines() if line} or {p.name for p in root.iterdir()}


def missing_paths(text: str, root: Path = ROOT) -> list[str]:
    """Tokens of text that start at a tracked top-level name (src/..., reports/x.png, params.yaml) but do not exist."""
    names = top_level_names(root)
    missing = set()
    for token in PATH_TOKEN.findall(text.replace("::", " ")):  # tests/test_x.py::test_y names tests/test_x.py
        token = token.rstrip(".")
        if token.split("/")[0] in names and "NAME" not in token and not (root / token).exists():  # NAME: a pattern
            missing.add(token)
    return sorted(missing)


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def decision_matches(text: str, promotion: dict) -> list[str]:
    """What the README's Decision section says against reports/promotion.json; [] when they agree.

    The learned head promoted: "**promoted**", "learned head" and its version as `@champion`. A fitted filter
    promoted instead: "**promoted the fitted filter**" and the filter's version. Nothing: "**nothing was promoted**".
    """
    body = section(text, "Decision")
    outcome = promotion.get("outcome", "learned head" if promotion["promoted"] else "nothing")
    problems = []
    if outcome == "learned head":
        if "**promoted**" not in body or "learned head" not in body:
            problems.append("promotion.json says the learned head was promoted, the Decision section does not say "
                            "**promoted** and learned head")
        if f"version {promotion['version']} is `@champion`" not in body:
            problems.append(f"the Decision section does not name version {promotion['version']} as `@champion`")
    elif outcome == "fitted filter":
        if "**promoted the fitted filter**" not in body:
            problems.append("promotion.json says a fitted filter was promoted, the Decision section does not say so")
        if f"version {promotion['fitted']['version']} is `@champion`" not in body:
            problems.append(f"the Decision section does not name the fitted filter's version "
                            f"{promotion['fitted']['version']} as `@champion`")
    elif "**nothing was promoted**" not in body:
        problems.append("promotion.json says nothing was promoted, the Decision section does not say so")
    return problems


def long_sentences(page: Path) -> set[str]:
    """The sentences of 90+ characters in page's prose (code blocks, headings and tables left out)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    prose = " ".join(line for line in text.splitlines() if not line.lstrip().startswith(("#", "|")))
    flat = re.sub(r"\s+", " ", prose)
    return {s.strip() for s in re.split(r"(?<=[.;:!?])\s", flat) if len(s.strip()) >= 90}


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_path_a_page_names_exists(page):
    assert missing_paths(page.read_text()) == []


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    for title in ("Two commands", "What you get", "Decision", "Set-up", "On a GPU with real FLUX", "Documentation"):
        section(text, title)
    assert "make run" in section(text, "Two commands") and "make test" in section(text, "Two commands")
    assert "Precision per CPU kind" in section(text, "Set-up")
    gpu_steps = [line for line in section(text, "On a GPU with real FLUX").splitlines() if re.match(r"\d\. ", line)]
    assert len(gpu_steps) == 5


def test_the_decision_section_says_what_the_last_run_decided():
    promotion = json.loads((ROOT / "reports" / "promotion.json").read_text())
    assert decision_matches((ROOT / "README.md").read_text(), promotion) == []


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert [p.name for p in pages()[1:] if f"(docs/{p.name})" not in readme] == []


def repeated_sentences(paths: list[Path]) -> list[str]:
    """Sentences of 90+ characters that appear on two pages: a topic told twice drifts."""
    seen: dict[str, str] = {}
    repeated = []
    for page in paths:
        for sentence in sorted(long_sentences(page)):
            if sentence in seen:
                repeated.append(f"{seen[sentence]} and {page.name}: {sentence[:80]}...")
            seen.setdefault(sentence, page.name)
    return repeated


def test_no_page_repeats_another():
    assert repeated_sentences(pages()) == []


# The checks themselves, on planted pages: each must see what it is for.

def test_the_checks_catch_broken_links_missing_paths_a_stale_decision_and_a_repeat(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "real.py").write_text("")
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Real heading\n")
    readme = tmp_path / "README.md"
    told = "A sentence long enough to count as a topic, told on two pages where it will drift apart unseen.\n"
    readme.write_text("[ok](docs/a.md#real-heading) [gone](docs/b.md) [nohead](docs/a.md#other) "
                      "[web](https://example.org)\n`src/real.py` `src/missing.py` and `src/` in prose, "
                      "`src/gone.py::test_x`, src/NAME.py.\n" + told +
                      "## Decision\n\nThe last run **promoted** the learned head: version 3 is `@champion`.\n")
    assert broken_links(readme, tmp_path) == ["README.md: docs/b.md", "README.md: docs/a.md#other (no such heading)"]
    assert missing_paths(readme.read_text(), tmp_path) == ["docs/b.md", "src/gone.py", "src/missing.py"]
    assert decision_matches(readme.read_text(), {"promoted": True, "version": "3"}) == []
    assert len(decision_matches(readme.read_text(), {"promoted": True, "version": "4"})) == 1
    assert len(decision_matches(readme.read_text(), {"promoted": False, "version": "4"})) == 1
    fitted = {"promoted": False, "version": "4", "outcome": "fitted filter", "fitted": {"version": "5"}}
    assert len(decision_matches(readme.read_text(), fitted)) == 2  # names neither the filter nor its version
    assert decision_matches("## Decision\n\nIt **promoted the fitted filter**: version 5 is `@champion`.\n",
                            fitted) == []
    assert len(decision_matches(readme.read_text(), {"promoted": False, "version": "3", "outcome": "nothing"})) == 1
    assert repeated_sentences([readme, tmp_path / "docs" / "a.md"]) == []
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n" + told)
    assert len(repeated_sentences([readme, tmp_path / "docs" / "a.md"])) == 1


def test_the_slug_follows_githubs_rule():
    assert slug("FLUX.1 on a GPU") == "flux1-on-a-gpu"
    assert slug("Presets: the model pairs users pick today") == "presets-the-model-pairs-users-pick-today"
    assert slug("The gate's calibration") == "the-gates-calibration"
