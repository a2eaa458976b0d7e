"""Runnable examples from the documentation; ``tests/test_docs_examples.py`` runs them."""
