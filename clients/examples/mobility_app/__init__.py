"""A small third-party mobility app: it asks a citizen (in their browser) for permission to add
trips to their vault, then uploads a few trips. Run it against a running server::

    python -m clients.examples.mobility_app --server http://127.0.0.1:8000

It uses Authlib's standard OAuth 2 client (authorization code + PKCE S256, Rich Authorization
Requests, refresh-token rotation) and no Civic Vault code at all.
"""
