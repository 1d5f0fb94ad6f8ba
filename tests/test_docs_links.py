"""The README and docs/ point only at things that exist in this repository.

- Every Markdown link or image target is a file (or folder) of the
  repository, a ``mailto:`` address, or a ``#anchor``. External ``http(s)``
  links are refused (the allow-list below is empty on purpose): the docs
  describe this repository, and a link out goes stale without anyone noticing.
- Nothing points at the blueprint the project started from (``../shared``,
  ``DESIGN.md``); the project's own design document is docs/architecture.md.
- Repository paths written in backticks (``notifications/log.py``,
  ``orders/api/``) exist, and dotted names of the project's modules
  (``notifications.streams.authorize``) name a module and something it
  defines. That keeps the architecture and development docs honest while
  the code moves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

# External links that are truly needed (none so far).
EXTERNAL_ALLOWED: frozenset[str] = frozenset()

# Top-level packages whose dotted names (``orders.actions.place_order``) are checked.
PACKAGES = ("booktime", "orders", "notifications", "frontend", "devtools", "bench", "tests")

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
# [text](target "title") and ![alt](target); the target may be wrapped in <>.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)
AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
HTML_TARGET = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
BARE_URL = re.compile(r"\bhttps?://[^\s)>\]`'\"]+")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
FORBIDDEN_TEXT = re.compile(r"\.\./shared|DESIGN\.md")
PATH_SUFFIXES = (".py", ".js", ".md", ".html")
DOTTED = re.compile(rf"^(?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")
LOCAL_HOSTS = ("http://127.0.0.1", "http://localhost", "http://[::1]")


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def prose(text: str) -> str:
    """The text without fenced code blocks, where a link is only an example."""
    return FENCE.sub("", text)


def heading_anchors(text: str) -> set[str]:
    """The ``#fragment`` each heading gets when the Markdown is rendered (GitHub's rule)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for match in HEADING.finditer(prose(text)):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1)).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def link_targets(text: str) -> list[str]:
    body = INLINE_CODE.sub("", prose(text))
    targets = INLINE_LINK.findall(body) + REFERENCE_DEF.findall(body)
    targets += AUTOLINK.findall(body) + HTML_TARGET.findall(body)
    return targets


def backticked(text: str) -> list[str]:
    return [match.group(2).strip() for match in INLINE_CODE.finditer(prose(text))]


def looks_like_repo_path(span: str) -> bool:
    """A single token naming a file of the repository or one of its folders.

    URL paths (``/api/``, ``ws/live/``) also end in ``/``: a folder counts only
    when its first segment is a top-level entry of the repository.
    """
    if "/" not in span or any(c.isspace() for c in span) or "://" in span:
        return False
    if span.startswith(("/", "~", "$")) or any(c in span for c in "<>{}?=&"):
        return False
    if span.endswith(PATH_SUFFIXES):
        return True
    if span.endswith("/"):
        first = span.split("/", 1)[0]
        return first in PACKAGES or (ROOT / first).is_dir()
    return False


def path_exists(span: str) -> bool:
    relative = span.removeprefix("./")
    if any(c in relative for c in "*?["):
        return any(ROOT.glob(relative))
    return (ROOT / relative).exists()


def module_file(parts: list[str]) -> tuple[Path, list[str]] | None:
    """The file of the longest module prefix of ``parts``, and the names after it."""
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate, parts[cut:]
        if cut == 1 and base.is_dir():
            return base, parts[cut:]
    return None


def defines(source: str, name: str) -> bool:
    pattern = (
        rf"^\s*(?:async\s+def|def|class)\s+{name}\b"
        rf"|^\s*{name}\s*(?::[^=\n]*)?="
        rf"|^\s*(?:from\s+\S+\s+)?import\s[^\n]*\b{name}\b"
    )
    return re.search(pattern, source, re.MULTILINE) is not None


def dotted_name_problem(name: str) -> str | None:
    found = module_file(name.split("."))
    if found is None:
        return f"`{name}`: no such module"
    path, attributes = found
    if path.is_dir():
        return f"`{name}`: {doc_id(path)}/ is not a Python package" if attributes else None
    source = path.read_text(encoding="utf-8")
    for attribute in attributes:
        if not defines(source, attribute):
            return f"`{name}`: {doc_id(path)} defines no {attribute!r}"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_links_point_inside_the_repository(doc: Path) -> None:
    problems = []
    text = doc.read_text(encoding="utf-8")
    for target in link_targets(text):
        if not target or target.startswith("mailto:"):
            continue
        if target.startswith("#"):
            if target[1:] not in heading_anchors(text):
                problems.append(f"{target}: no such heading in this file")
            continue
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            if target not in EXTERNAL_ALLOWED:
                problems.append(f"{target}: external link (not in EXTERNAL_ALLOWED)")
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (ROOT if path.startswith("/") else doc.parent) / path.lstrip("/")
        if not resolved.resolve().is_relative_to(ROOT):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif "#" in target and resolved.suffix == ".md":
            fragment = target.split("#", 1)[1]
            if fragment not in heading_anchors(resolved.read_text(encoding="utf-8")):
                problems.append(f"{target}: {path} has no heading #{fragment}")
    assert not problems, f"{doc_id(doc)}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_no_bare_external_urls(doc: Path) -> None:
    """A URL in running text (outside code) is a link too; local addresses are examples."""
    body = INLINE_CODE.sub("", prose(doc.read_text(encoding="utf-8")))
    urls = [
        url
        for url in BARE_URL.findall(body)
        if url not in EXTERNAL_ALLOWED and not url.startswith(LOCAL_HOSTS)
    ]
    assert not urls, f"{doc_id(doc)}: external URLs {urls}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_nothing_points_at_the_original_blueprint(doc: Path) -> None:
    lines = [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
        if FORBIDDEN_TEXT.search(line)
    ]
    assert not lines, f"{doc_id(doc)} mentions ../shared or DESIGN.md:\n  " + "\n  ".join(lines)


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_paths_in_backticks_exist(doc: Path) -> None:
    spans = backticked(doc.read_text(encoding="utf-8"))
    missing = sorted({s for s in spans if looks_like_repo_path(s) and not path_exists(s)})
    assert not missing, f"{doc_id(doc)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_module_names_in_backticks_exist(doc: Path) -> None:
    spans = {s.removesuffix("()") for s in backticked(doc.read_text(encoding="utf-8"))}
    problems = sorted(filter(None, (dotted_name_problem(s) for s in spans if DOTTED.match(s))))
    assert not problems, f"{doc_id(doc)}:\n  " + "\n  ".join(problems)


def test_the_checks_catch_what_they_should() -> None:
    """The helpers above are what every check rests on; make sure they can fail."""
    sample = (
        "See [a](docs/nowhere.md), ![b](x.png 'title'), [c](https://example.com),"
        " [d](#anchor), <https://example.org>, `orders/missing.py`.\n"
        "```\n[in code](not/checked.md)\n```\n[ref]: ../outside.md\n"
    )
    assert link_targets(sample) == [
        "docs/nowhere.md",
        "x.png",
        "https://example.com",
        "#anchor",
        "../outside.md",
        "https://example.org",
    ]
    assert backticked(sample) == ["orders/missing.py"]
    assert looks_like_repo_path("orders/missing.py") and not path_exists("orders/missing.py")
    assert looks_like_repo_path("orders/api/") and path_exists("orders/api/")
    assert not looks_like_repo_path("ws/live/") and not looks_like_repo_path("/api/docs/")
    assert not looks_like_repo_path(".venv/bin/pytest tests/test_docs_links.py -q")
    assert path_exists("tests/test_docs_*.py")
    assert dotted_name_problem("orders.models.lock_event_log") is None
    assert dotted_name_problem("orders.models.no_such_function") is not None
    assert dotted_name_problem("orders.no_such_module") is not None
    assert FORBIDDEN_TEXT.search("[design](../shared/DESIGN.md)")
    assert heading_anchors(
        "# Error codes\n## The WebSocket protocol (`ws/live/`)\n## Error codes"
    ) == {
        "error-codes",
        "the-websocket-protocol-wslive",
        "error-codes-1",
    }
