"""Test apps that `litejobs run` imports in the process-level tests."""
