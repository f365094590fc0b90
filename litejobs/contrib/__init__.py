"""Integrations with other frameworks, each behind its own extra (``litejobs[django]``).

Nothing here is imported by ``import litejobs``: a module of this package imports its
framework, and is imported only by an app that uses it.
"""
