"""Routers, one per concern; ``app.py`` mounts those the process's role serves."""
