"""The composition root: wires the packages together into the running service."""
