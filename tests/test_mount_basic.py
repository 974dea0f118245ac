"""Smoke test of the mount harness: list and read through a real mount."""

from pathlib import Path


def test_listing_and_reading_match_served(served: Path, mount):
    (served / "hello.txt").write_bytes(b"hello\n")
    (served / "sub").mkdir()
    assert sorted(p.name for p in mount.path.iterdir()) == ["hello.txt", "sub"]
    assert (mount.path / "hello.txt").read_bytes() == b"hello\n"
