"""Thin wrappers over PyNaCl. No primitive is implemented here; each module states its property."""
