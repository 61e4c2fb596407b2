"""Clients of the Civic Vault services. They talk HTTP; see the import rule in tests."""
