"""What every part of ats shares, and nothing above it: the exception tree (:mod:`.errors`),
settings (:mod:`.settings`), account-id masking, the strategy-run inputs (params, sleeves, pins),
the gateway-health policy, apprise notifications and the local Prefect server helper.

Imports only the standard library, third-party packages and other ``ats.core`` modules
(``tests/test_import_layers.py`` checks it)."""
