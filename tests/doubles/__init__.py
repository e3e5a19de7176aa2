"""Test doubles: hand-built stand-ins whose internals are known by construction.

Importable from any test module as `doubles.<module>` (pytest puts tests/ on sys.path, since
tests/ is not a package).
"""
