"""`firecrest-fs demo`: the bundled local server and a mount of it, for trying things out."""

from __future__ import annotations

import logging
import os
import random
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def make_sample_tree(root: Path) -> None:
    """Fill `root` with nested folders, text and binary files, and names that need care."""
    (root / "projects" / "climate" / "results").mkdir(parents=True)
    (root / "projects" / "genome").mkdir(parents=True)
    (root / "notes with spaces").mkdir()
    (root / "données").mkdir()

    (root / "README.txt").write_text(
        "This folder is served by the firecrest-fs demo server.\n"
        "Edit, copy, rename and delete files here: the changes land in the served directory.\n"
    )
    (root / "projects" / "climate" / "run.sh").write_text("#!/bin/bash\n#SBATCH --nodes=1\nsrun ./model --days 30\n")
    (root / "projects" / "climate" / "run.sh").chmod(0o755)
    rows = "\n".join(f"{day},{15 + (day % 7) * 0.5:.1f}" for day in range(1, 366))
    (root / "projects" / "climate" / "results" / "temperature.csv").write_text("day,celsius\n" + rows + "\n")
    generator = random.Random(42)
    (root / "projects" / "climate" / "results" / "field.bin").write_bytes(generator.randbytes(256 * 1024))
    (root / "projects" / "genome" / "sample.fasta").write_text(">seq1\n" + "ACGT" * 200 + "\n")
    (root / "notes with spaces" / "meeting notes.md").write_text("# Meeting\n\n- move the data to scratch\n")
    (root / "données" / "résumé.txt").write_text("Un fichier au nom accentué.\n")
    (root / "données" / "日本語.txt").write_text("ファイル\n")
    (root / ".hidden-config").write_text("option = 1\n")
    os.symlink("projects/climate/results", root / "latest-results")


def default_root() -> Path:
    """Create a fresh sample tree in a new temporary folder and return its path."""
    root = Path(tempfile.mkdtemp(prefix="firecrest-fs-demo-"))
    make_sample_tree(root)
    return root
