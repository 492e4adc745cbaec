"""Find a secret number anywhere under a directory, in every form a results file could hold it: decimal
text (JSON, CSV, logs), a float's repr, and 8-byte integers or doubles of either byte order (Parquet,
Arrow, a pickled or torch-saved int)."""

from __future__ import annotations

import struct
from pathlib import Path


def encodings(value: int) -> list[bytes]:
    forms = [str(value).encode(), repr(float(value)).encode()]
    for order in "<>":
        forms.append(struct.pack(f"{order}q", value))
        forms.append(struct.pack(f"{order}d", float(value)))
    return forms


def files_holding(directory: Path, values: list[int], skip: tuple[str, ...] = ()) -> list[str]:
    """Every file under ``directory`` (names in ``skip`` left out) that holds one of ``values``."""
    found = []
    for path in sorted(Path(directory).rglob("*")):
        if not path.is_file() or path.name in skip:
            continue
        data = path.read_bytes()
        found += [f"{path.relative_to(directory)} holds {v}" for v in values if any(f in data for f in encodings(v))]
    return found
