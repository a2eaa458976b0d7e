"""aiotaskq: an asyncio-native background job queue backed by Redis."""

from ._connection import NoConnectionAvailable
from .errors import AiotaskqError, JobCancelled, JobFailed, JobNotFound, Retry
from .job import Job, JobInfo, JobStatus
from .pool import Pool
from .queue import PayloadTooLarge, Queue
from .retry import Backoff
from .schedule import ScheduleInfo
from .task import BoundTask, Task

__all__ = [
    "AiotaskqError",
    "Backoff",
    "BoundTask",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobInfo",
    "JobNotFound",
    "JobStatus",
    "NoConnectionAvailable",
    "PayloadTooLarge",
    "Pool",
    "Queue",
    "Retry",
    "ScheduleInfo",
    "Task",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("aiotaskq."):
        _obj.__module__ = "aiotaskq"
del _name, _obj
