"""Releases: build, benchmark, gate, publish, roll back. See docs/releases.md."""
