"""How Redis holds a job (see ``_lib.lua`` for the formats, and docs/architecture.md).

While a job is scheduled, queued or active, its *record* is a field of the queue's ``jobs``
hash; while it is active, its *active entry* (owner pool, attempt, start, cancel flag,
progress) is a field of the ``active`` hash; once it ended, its *ended record* (status,
end time, duration, the active entry, result, error, traceback, then the record) is the
string ``job:<id>``. ``fields`` turns what Redis holds into one mapping of field names
(those docs/architecture.md lists), the empty ones left out.
"""

from __future__ import annotations

from typing import Final

_STATUS: Final = {b"s": b"scheduled", b"q": b"queued", b"S": b"succeeded", b"F": b"failed", b"C": b"cancelled"}
_RECORD: Final = (b"status", b"prio", b"retries", b"timeout", b"attempts", b"enq_at", b"due_at")
_ACTIVE: Final = (b"pool", b"attempts", b"start_at", b"cancel", b"progress")
# The optional sections of a record after its payload, each <letter><length>|<bytes>.
_SECTIONS: Final = {ord("k"): b"key", ord("a"): b"after", ord("g"): b"group"}


class BadRecord(ValueError):
    """Bytes that are not a job record (written by hand, say)."""


def _bad(raw: bytes) -> BadRecord:
    return BadRecord(f"not a job record: {raw[:40]!r}")


def claimed_fields(job_id: bytes, attempt: bytes, raw: bytes) -> list[bytes]:
    """A job claim.lua returned: id, task, payload, attempt, max retries ('' = the task's
    default), timeout, enqueue time ms; [] for a record that does not parse."""
    return claimed_row(job_id, attempt, raw)[:7]


def claimed_row(job_id: bytes, attempt: bytes, raw: bytes) -> list[bytes]:
    """``claimed_fields`` and then the due time ms ('' = when enqueued): what a pool starts
    a claimed job from (the due time is what ``aiotaskq.metrics`` measures waits from)."""
    parts = raw.split(b"|", 9)
    try:
        tl, pl = int(parts[7]), int(parts[8])
    except (IndexError, ValueError):
        return []
    rest = parts[9]
    return [job_id, rest[:tl], rest[tl : tl + pl], attempt, parts[2], parts[3], parts[5], parts[6]]


def record(raw: bytes) -> dict[bytes, bytes]:
    """The fields of a record (jobs hash)."""
    parts = raw.split(b"|", 9)
    if len(parts) != 10 or parts[0] not in _STATUS:
        raise _bad(raw)
    try:
        tl, pl = int(parts[7] or 0), int(parts[8] or 0)
    except ValueError:
        raise _bad(raw) from None
    out = {name: value for name, value in zip(_RECORD, parts, strict=False) if value}
    out[b"status"] = _STATUS[parts[0]]
    rest = parts[9]
    out[b"task"], out[b"payload"] = rest[:tl], rest[tl : tl + pl]
    tail = _sections(rest[tl + pl :], out, raw)
    if tail:  # the last failure of a job waiting for its retry
        le, _, body = tail.partition(b"|")
        if not le.isdigit():
            raise _bad(raw)
        _put(out, b"error", body[: int(le)])
        _put(out, b"tb", body[int(le) :])
    return out


def _sections(tail: bytes, out: dict[bytes, bytes], raw: bytes) -> bytes:
    """Read the optional sections at the head of ``tail`` into ``out``; what follows them."""
    while tail and tail[0] in _SECTIONS:
        n, sep, body = tail[1:].partition(b"|")
        if not sep or not n.isdigit():
            raise _bad(raw)
        out[_SECTIONS[tail[0]]] = body[: int(n)]
        tail = body[int(n) :]
    return tail


def parents(blob: bytes) -> list[bytes]:
    """The job ids of a record's ``after`` section (each ``<length>:<id>``)."""
    ids, i = [], 0
    while i < len(blob):
        colon = blob.index(b":", i)
        n = int(blob[i:colon])
        ids.append(blob[colon + 1 : colon + 1 + n])
        i = colon + 1 + n
    return ids


def encode_parents(ids: list[str]) -> str:
    """The ``after`` section of a job with these parents (lengths in bytes)."""
    return "".join(f"{len(i.encode())}:{i}" for i in ids)


def active(raw: bytes) -> dict[bytes, bytes]:
    """The fields of an active entry (active hash), status included."""
    parts = raw.split(b"|", 5)
    if len(parts) != 6:
        raise _bad(raw)
    out = {name: value for name, value in zip(_ACTIVE, parts, strict=False) if value}
    _put(out, b"progress_note", parts[5])
    out[b"status"] = b"active"
    return out


def ended(raw: bytes) -> dict[bytes, bytes]:
    """The fields of an ended record (job:<id>)."""
    parts = raw.split(b"|", 7)
    if len(parts) != 8 or parts[0] not in _STATUS:
        raise _bad(raw)
    try:
        la, lr, le, lt = (int(x or 0) for x in parts[3:7])
    except ValueError:
        raise _bad(raw) from None
    body = parts[7]
    a, r = body[:la], body[la : la + lr]
    e, t = body[la + lr : la + lr + le], body[la + lr + le : la + lr + le + lt]
    out = record(body[la + lr + le + lt :])  # its error and traceback: of a failed attempt before this one
    if e or t:
        out.pop(b"error", None)
        out.pop(b"tb", None)
    if a:
        out |= active(a)
    out[b"status"] = _STATUS[parts[0]]
    _put(out, b"end_at", parts[1])
    _put(out, b"duration", parts[2])
    _put(out, b"result", r)
    _put(out, b"error", e)
    _put(out, b"tb", t)
    return out


def fields(pending: bytes | None, running: bytes | None, done: bytes | None) -> dict[bytes, bytes] | None:
    """A job's fields from its record, active entry and ended record (each None when absent);
    None when there is no such job, or what Redis holds does not parse."""
    try:
        if pending is not None:
            out = record(pending)
            if running is not None:
                out |= active(running)
            return out
        return ended(done) if done is not None else None
    except BadRecord:
        return None


def _put(out: dict[bytes, bytes], name: bytes, value: bytes) -> None:
    if value:
        out[name] = value


def encode_record(f: dict[bytes, bytes]) -> bytes:
    """A record (jobs hash) from fields as ``record`` gives them: what tests and tools that
    edit a waiting job write back."""
    code = {v: k for k, v in _STATUS.items()}[f[b"status"]]
    head = [code] + [f.get(name, b"") for name in _RECORD[1:]]
    task, payload = f.get(b"task", b""), f.get(b"payload", b"")
    out = b"|".join([*head, str(len(task)).encode(), str(len(payload)).encode()]) + b"|" + task + payload
    for letter, name in _SECTIONS.items():
        if value := f.get(name, b""):
            out += bytes([letter]) + str(len(value)).encode() + b"|" + value
    err, tb = f.get(b"error", b""), f.get(b"tb", b"")
    if err or tb:
        out += str(len(err)).encode() + b"|" + err + tb
    return out
