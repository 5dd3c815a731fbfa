"""The documentation stands on its own: links resolve, the index lists every page, and no
file cites documents that users do not get."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
FENCED_BLOCK = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # https:, mailto:, ...


def prose(text: str) -> str:
    """Markdown without code blocks and code spans (links there are not links)."""
    return INLINE_CODE.sub("", FENCED_BLOCK.sub("", text))


def links(path: Path) -> list[str]:
    text = prose(path.read_text())
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: its text lower-cased, punctuation dropped, spaces to
    hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts as its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Anchors of every heading of a markdown file (repeated headings get -1, -2, ...)."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCED_BLOCK.sub("", path.read_text()),
                              re.M):
        slug = anchor(heading)
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def test_anchor_follows_github():
    assert anchor("The batch contract") == "the-batch-contract"
    assert anchor("`vgg_cbam` and the baselines — VGG16-CBAM") == \
        "vgg_cbam-and-the-baselines--vgg16-cbam"
    assert anchor("Adding things: one place each") == "adding-things-one-place-each"


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files_and_headings(page):
    broken = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target} (no heading #{fragment} in {destination.name})")
    assert broken == [], f"{page.relative_to(ROOT)} has broken links: {broken}"


def test_docs_index_and_readme_list_every_page():
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    indexed = {Path(t.partition("#")[0]).name for t in links(DOCS / "README.md")}
    from_readme = {Path(t.partition("#")[0]).name for t in links(ROOT / "README.md")
                   if t.startswith("docs/")}
    assert pages <= indexed, f"docs/README.md does not list {sorted(pages - indexed)}"
    assert pages <= from_readme, \
        f"README.md's Documentation list misses {sorted(pages - from_readme)}"


# Users get only the repository: files cite the papers by method and authors and the
# explanations in docs/, never the project's internal notes or their seed numbers.
INTERNAL = re.compile(r"\b(?:REFERENCE|DESIGN|SPEC)\.md\b|\bseeds?[ _-]?00[0-3]\b", re.I)
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".sh"}
TEXT_NAMES = {"Makefile", ".gitignore", ".dockerignore", "run"}
UNTRACKED_DIRS = {".git", ".venv", "logs", "outputs", "multirun", "wandb", "runs", "build",
                  "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}


def shipped_text_files() -> list[Path]:
    """The repository's text files: git's tracked files, or (outside a git checkout) every
    file but environments, caches and run outputs."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                check=True, text=True).stdout.split("\0")
        paths = [ROOT / name for name in listed if name]
    except (OSError, subprocess.CalledProcessError):
        paths = [path for path in ROOT.rglob("*")
                 if not set(path.relative_to(ROOT).parts) & UNTRACKED_DIRS
                 and path.relative_to(ROOT).parts[0] != "data"]
    return [path for path in paths
            if path.is_file() and path != Path(__file__).resolve()
            and (path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES
                 or path.name.startswith("Dockerfile"))]


def test_no_file_cites_internal_notes_or_seed_numbers():
    hits = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
            for path in shipped_text_files()
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
            if INTERNAL.search(line)]
    assert hits == [], "name papers by method and authors, explanations go to docs/:\n" + \
        "\n".join(hits)


def test_checkpoint_examples_name_handles_that_exist():
    """Training writes best-epochNNN.ckpt; `best.ckpt` in an example never exists. Examples
    use the handles eval / predict / export resolve (best, last, a run folder) or a path."""
    never_written = {"best.ckpt", "last.ckpt", "best.onnx"}
    for page in [*MARKDOWN, *sorted((ROOT / "fer_lightning/conf").glob("*.yaml"))]:
        for value in re.findall(r"ckpt_path=([^\s`'\")\]]+)", page.read_text()):
            assert value not in never_written, f"{page.name}: ckpt_path={value}"
