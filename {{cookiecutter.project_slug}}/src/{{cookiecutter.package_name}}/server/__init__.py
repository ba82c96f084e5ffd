"""The servers: one short constructor each, wired by `containers.py`."""
