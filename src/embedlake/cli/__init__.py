"""The ``embedlake`` command line."""
