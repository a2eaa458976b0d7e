"""Small importable apps that tests run in worker subprocesses."""
