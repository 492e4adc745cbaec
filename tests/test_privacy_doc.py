"""docs/privacy.md's epsilon table is what the accountants compute today."""

import re
from pathlib import Path

import pytest

from experiments.privacy_table import COLUMNS, SETTINGS, rows

DOC = Path(__file__).resolve().parents[1] / "docs" / "privacy.md"


def _doc_table() -> list[list[float]]:
    text = DOC.read_text()
    block = re.search(r"<!-- privacy-table:start -->(.*?)<!-- privacy-table:end -->", text, re.S).group(1)
    lines = [ln for ln in block.strip().splitlines()[2:] if ln.startswith("|")]
    return [[float(cell) for cell in ln.strip("|").split("|")] for ln in lines]


@pytest.fixture(scope="module")
def computed():
    return rows()


def test_doc_table_matches_the_accountants(computed):
    table = _doc_table()

    assert len(table) == len(SETTINGS) == 5
    for doc_row, row in zip(table, computed):
        assert doc_row[:4] == pytest.approx([row["z"], row["q"], row["T"], row["delta"]])
        assert doc_row[4:] == pytest.approx([row[c] for c in COLUMNS], abs=6e-4)  # printed to 3 decimals


def test_every_reported_epsilon_is_at_least_pld_and_within_1_1_rdp(computed):
    for row in computed:
        for ours in ("ours_rdp", "ours_prv", "ours_pld"):
            assert row[ours] >= row["ref_pld"] - 1e-3, (ours, row)
            assert row[ours] <= 1.1 * row["ref_rdp"], (ours, row)
