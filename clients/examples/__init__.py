"""Example apps built on Civic Vault's public API. They import no project package: everything
goes over HTTP with standard libraries, as an outside developer's app would."""
