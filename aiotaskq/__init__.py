"""aiotaskq: an asyncio-native background job queue backed by Redis."""

__version__ = "0.1.0"  # the package's version (pyproject.toml reads it from here)

from ._connection import ClusterUrlNeeded, NoConnectionAvailable
from ._limits import KEEP_FOREVER
from ._scripts import NotReplicated
from .context import JobContext, current_job
from .errors import (
    AiotaskqError,
    CorruptResult,
    DependencyFailed,
    JobCancelled,
    JobFailed,
    JobNotFound,
    PayloadTooLarge,
    Retry,
    StorageLayoutError,
)
from .hooks import JobOutcome
from .job import Group, Job, JobInfo, JobStatus
from .pool import Pool
from .queue import Queue
from .retry import Backoff
from .schedule import ScheduleInfo
from .task import BoundTask, Call, Task

__all__ = [
    "KEEP_FOREVER",
    "AiotaskqError",
    "Backoff",
    "BoundTask",
    "Call",
    "ClusterUrlNeeded",
    "CorruptResult",
    "DependencyFailed",
    "Group",
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
    "PayloadTooLarge",
    "Pool",
    "Queue",
    "Retry",
    "ScheduleInfo",
    "StorageLayoutError",
    "Task",
    "current_job",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("aiotaskq."):
        _obj.__module__ = "aiotaskq"
del _name, _obj
