"""The public surface: ``aiotaskq.__all__`` is exactly what we mean to export (like
httpx's and anyio's exported-members tests)."""

from __future__ import annotations

import pytest

import aiotaskq

EXPECTED = {
    "KEEP_FOREVER",
    "AiotaskqError",
    "Backoff",
    "BoundTask",
    "Call",
    "DependencyFailed",
    "Group",
    "CorruptResult",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobInfo",
    "JobNotFound",
    "JobOutcome",
    "JobStatus",
    "NoConnectionAvailable",
    "NotReplicated",
    "ClusterUrlNeeded",
    "PayloadTooLarge",
    "Pool",
    "Queue",
    "Retry",
    "ScheduleInfo",
    "StorageLayoutError",
    "Task",
    "current_job",
}

# The names the design contract promises (section 2).
CONTRACT = {"Queue", "Pool", "Job", "JobInfo", "JobStatus", "Retry", "JobFailed", "JobCancelled"}


def test_all_is_exactly_the_public_names() -> None:
    assert len(aiotaskq.__all__) == len(set(aiotaskq.__all__)), "duplicates in __all__"
    assert set(aiotaskq.__all__) == EXPECTED
    assert CONTRACT <= EXPECTED


# Values, not classes or functions: they have no module of their own.
CONSTANTS = {"KEEP_FOREVER"}


@pytest.mark.parametrize("name", sorted(EXPECTED - CONSTANTS))
def test_exported_member_is_shown_as_aiotaskq(name: str) -> None:
    member = getattr(aiotaskq, name)
    assert member.__module__ == "aiotaskq", f"{name} shows up as {member.__module__}.{name}"


def test_star_import_gives_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from aiotaskq import *", namespace)
    assert set(namespace) - {"__builtins__"} == EXPECTED


def test_no_other_public_classes_or_functions_leak() -> None:
    public = {
        name
        for name, value in vars(aiotaskq).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == "aiotaskq"
    }
    assert public == EXPECTED - CONSTANTS
