"""The bottom layer: plumbing every app may use (pages, DRF, admin helpers, uploads, files, env,
the domain error base). It imports no app; ``tests/tower/test_layers.py`` holds it to that."""
