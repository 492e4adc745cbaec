"""The README and docs point at things that exist: every config they name, every file they link."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIGS = ROOT / "experiments" / "configs"


def named_configs(text: str) -> set[str]:
    """``*.toml`` names of shipped configs a page mentions (``my.toml``-style placeholders aside)."""
    names = set(re.findall(r"(?:experiments/configs/)?([a-z0-9_]+\.toml)", text))
    return {n for n in names if n not in {"my.toml", "pyproject.toml", "job.toml"}}


def links(text: str) -> set[str]:
    """Relative link targets of a markdown page (anchors dropped)."""
    return {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)
            if not t.startswith(("http://", "https://", "#", "mailto:"))}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_config_a_page_names_is_shipped(page):
    missing = {n for n in named_configs(page.read_text()) if not (CONFIGS / n).is_file()}

    assert not missing, f"{page.name} names configs that do not exist: {sorted(missing)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = {t for t in links(page.read_text()) if t and not (page.parent / t).exists()}

    assert not broken, f"{page.name} links to missing files: {sorted(broken)}"


def test_the_checks_see_a_missing_config_and_a_broken_link():
    assert named_configs("see `experiments/configs/nope.toml` and mnist_silos.toml") == {"nope.toml",
                                                                                          "mnist_silos.toml"}
    assert links("[a](docs/x.md#y) [b](https://ray.io) [c](#top)") == {"docs/x.md"}
