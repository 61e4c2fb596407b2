"""OAuth 2.1 for Civic Vault: an authorization server (Authlib under FastAPI), hardened to RFC 9700.

Outside apps, department services, analysts and the citizen app all get opaque ``cv_`` access tokens
that are rows of the vault's one ``access_tokens`` table, so the single gate
``vault.api.deps.require`` accepts them without change. See ``docs/oauth.md``.

Modules, one idea each:

* ``policy``: scopes, audiences (RFC 8707) and lifetimes, as data;
* ``models``: the tables (clients, authorization codes, grant families, refresh tokens, staff);
* ``clients``: registration (RFC 7591), client secrets (stored hashed), secret rotation;
* ``staff``: analyst and DPO accounts (Argon2id password hashes, lockout);
* ``rar``: Rich Authorization Requests (RFC 9396), type ``civic-vault:consent``;
* ``consent_screen``: the plain words on the consent page;
* ``grants`` and ``server``: the Authlib adapter (grants, endpoints, token issuance);
* ``enforcement``: what an app token may do on a stream (``require_authorization_details``);
* ``connected_apps``: the citizen's view of the apps they connected, and disconnecting one;
* ``runtime``: ``OAuthRuntime.build(vault_runtime)`` with the hook slots for the consent package;
* ``api``: the routes; ``demo``: seeding the demo city's clients and staff.
"""
