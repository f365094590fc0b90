"""The dashboard's tests (a package: tests/web/test_api.py and tests/test_api.py coexist)."""
