"""The analysts' and citizens' Python client and the ``civic-vault`` command line."""
