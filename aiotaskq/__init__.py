"""aiotaskq: an asyncio-native background job queue backed by Redis."""

from ._connection import ClusterUrlNeeded, NoConnectionAvailable
from ._limits import KEEP_FOREVER
from ._scripts import NotReplicated
from .context import JobContext, current_job
from .errors import AiotaskqError, CorruptResult, JobCancelled, JobFailed, JobNotFound, Retry, StorageLayoutError
from .hooks import JobOutcome
from .job import Job, JobInfo, JobStatus
from .pool import Pool
from .queue import PayloadTooLarge, Queue
from .retry import Backoff
from .schedule import ScheduleInfo
from .task import BoundTask, Task

__all__ = [
    "KEEP_FOREVER",
    "AiotaskqError",
    "Backoff",
    "BoundTask",
    "ClusterUrlNeeded",
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
