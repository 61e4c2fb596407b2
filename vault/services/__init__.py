"""Vault services: domain operations over a Session. They flush; the caller's unit of work commits."""
