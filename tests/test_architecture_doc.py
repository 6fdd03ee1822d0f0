"""docs/architecture.md names modules and folders; each one it names must exist in the tree (a renamed
or removed module fails here until the page is updated)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "architecture.md")
#: paths outside this repository the page refers to (the design we started from, peers' sources)
EXTERNAL = ("../", "torch/", "torch_npu/", "msprobe/")
#: files the page says DESIGN.md planned and the code does not have
FORMER = {"cluster.py"}
#: a file or folder name in backticks or in a diagram: word characters, slashes, dots, <placeholders>
PATH_RE = re.compile(r"(?<![\w./<>-])((?:[\w<>-]+/)*[\w<>-]+\.py|(?:[\w<>-]+/)+)(?![\w/])")


def named_paths():
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    code = re.findall(r"`([^`\n]+)`", text) + re.findall(r"```\n(.*?)```", text, re.S)
    found = set()
    for chunk in code:
        found.update(m.group(1) for m in PATH_RE.finditer(chunk))
    return sorted(p for p in found if not p.startswith(EXTERNAL))


def resolves(path):
    """A path exists relative to the repo root; a bare or partial name (``checkops.py``, ``ops/registry.py``)
    may sit anywhere below ascend_tools/, tools/, kernels/, tests/ or bench/; ``<op>`` matches any name."""
    pattern = re.compile("(^|/)" + re.escape(path.rstrip("/")).replace(re.escape("<op>"), r"\w+") + "$")
    if os.path.exists(os.path.join(ROOT, path)):
        return True
    for top in ("ascend_tools", "tools", "kernels", "tests", "bench"):
        if pattern.search(top):
            return True
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            rel = os.path.relpath(dirpath, ROOT)
            if any(pattern.search(os.path.join(rel, n)) for n in dirnames + filenames):
                return True
    return False


def test_the_page_names_paths():
    assert len(named_paths()) > 30


def test_every_path_the_page_names_exists():
    missing = [p for p in named_paths() if p not in FORMER and not resolves(p)]
    assert missing == []


def test_former_files_are_really_gone():
    assert [p for p in FORMER if resolves(p)] == []
