"""Consent terms: machine-readable, signed, enforceable. Pure Python, no I/O, no project imports."""
