"""Dimension reduction of a release's vectors."""
