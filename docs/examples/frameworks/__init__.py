"""One small application per web framework, each enqueueing on aiotaskq from its handlers
(docs/frameworks.md); ``tests/test_frameworks.py`` runs each with the framework's own test client."""
