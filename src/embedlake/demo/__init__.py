"""The demo corpus: docstrings of the installed Python, so the demo needs no downloaded data."""
