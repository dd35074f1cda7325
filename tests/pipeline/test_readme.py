"""README.md leads to every doc, and its relative links point at files that exist."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _links(text: str) -> set[str]:
    """Relative link targets of Markdown links and images, without #anchors."""
    return {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)
            if not re.match(r"[a-z]+:", t) and not t.startswith("#")}


def test_readme_links_every_doc():
    links = _links((ROOT / "README.md").read_text())
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert len(docs) >= 10  # design, extract, finetune, train, evaluate, serve, ... found
    assert sorted(docs - links) == []
    assert any(link.startswith("docs/figures/") for link in links)


def test_readme_links_exist():
    missing = [t for t in _links((ROOT / "README.md").read_text()) if not (ROOT / t).exists()]
    assert missing == []
