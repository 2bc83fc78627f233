"""Model storage: model folders in the lake (content-hashed, immutable, registered in the catalog),
resolved from what a user types, and loaded as encoders with the workspace's options.

The encoder kinds themselves (``embedlake.encoders``) know nothing of the lake or the catalog.
"""
