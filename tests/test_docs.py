"""The docs a newcomer reads: every relative link in ``README.md`` and ``docs/*.md`` leads to
a file or folder of the repository, and the README stays a landing page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# [text](target) and ![alt](target), the target up to the first space or ')'; code spans and
# fenced blocks are left out, since a link inside them is text, not a link.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def relative_links(page: Path) -> list[str]:
    """Link targets that are not URLs (``https:``, ``mailto:``); ``#anchor`` alone points
    into the page itself."""
    text = CODE.sub("", FENCE.sub("", page.read_text()))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    missing = []
    for target in relative_links(page):
        if target.startswith("#"):
            continue  # see test_every_anchor_names_a_heading
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(REPO)} links to what does not exist: {missing}"


def test_the_links_are_found():
    """The pattern sees the links the README is made of (a check of the check)."""
    links = relative_links(REPO / "README.md")
    assert "docs/own-model.md" in links and "reports/default/report.md" in links


def test_the_readme_is_a_landing_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; guides belong in docs/"


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to
    hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.*)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_anchor_names_a_heading(page):
    broken = []
    for target in relative_links(page):
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if anchor and path.suffix == ".md" and path.exists() and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: no such heading: {broken}"
