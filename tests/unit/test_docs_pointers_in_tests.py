"""A test's docstring or comment that sends the reader to `docs/PAGE.md`, or to `docs/PAGE.md, "Section"`, names a page
that is there and words that page has: test_docs_links.py checks the pointers of canary/, the manifests and scripts,
and the README split (decision 995) left about 35 tests pointing at the README for text that had moved; they name the
page and section now (decision 1062), and a heading renamed or a page moved must not leave them pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = re.compile(r"(?<![\w/.])docs/[\w./-]+?\.(?:md|json)\b")
SECTION = re.compile(r"(?<![\w/.])(docs/[\w./-]+\.md)(?:,|'s)? ?\\?\"([^\"\\\n]{3,80})\\?\"")
# the two files whose text is about such pointers, not pointers themselves (`docs/PAGE.md, "Section"`)
ABOUT_POINTERS = {"test_docs_links.py", Path(__file__).name}


def _flat(text: str) -> str:
    return " ".join(text.lower().split())


def test_every_page_and_section_a_test_points_at_is_there() -> None:
    sources = [p for p in sorted((ROOT / "tests").rglob("*.py")) if p.name not in ABOUT_POINTERS]
    pages = {(src, page) for src in sources for page in PAGE.findall(src.read_text())}
    sections = [(src, page, words) for src in sources for page, words in SECTION.findall(src.read_text())]
    assert len(sections) >= 15, sections  # not vacuous: the pointers decision 1062 wrote
    missing = sorted(f"{src.relative_to(ROOT)}: {page}" for src, page in pages if not (ROOT / page).exists())
    assert not missing, missing
    absent = [f"{src.relative_to(ROOT)}: {page}, {words!r}" for src, page, words in sections
              if (ROOT / page).exists() and _flat(words) not in _flat((ROOT / page).read_text())]
    assert not absent, absent
