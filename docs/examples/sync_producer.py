"""Enqueueing from code without an event loop, as docs/sync.md shows it: a WSGI view (Flask,
Django) or a script calls ``enqueue_sync`` and, when it must, ``result_sync``; the worker is the
usual ``aiotaskq worker``. tests/test_sync.py runs ``handle_signup`` from threads against a real
Redis with a pool running."""

from __future__ import annotations

from aiotaskq import Queue

queue = Queue("accounts")


@queue.task(retries=3)
async def send_welcome(user_id: int, email: str) -> str:
    return f"welcome mail sent to {email}"


def handle_signup(user_id: int, email: str) -> str:
    """A synchronous request handler: no event loop, one blocking round trip."""
    job = send_welcome.enqueue_sync(user_id, email)
    return job.id  # return at once; the worker sends the mail


def wait_for_welcome(job_id: str, timeout: float = 10.0) -> str:
    """A script (or a test) that needs the outcome: blocks until the job ended."""
    return str(queue.job(job_id).result_sync(timeout=timeout))
