"""The operator's commands (``aiotaskq job|jobs|cancel|requeue|purge|enqueue|schedules|check``),
run as a user runs them: a subprocess, on the application's module (tests/apps/faultapp.py) or
on ``--queue NAME --url URL`` alone, against a real Redis."""

from __future__ import annotations

import io
import json
import os
import re
import socket

import anyio
import pytest
from _util import must, run_pool, wait_for, wait_status
from test_cli import APP, cli_env, run_cli

from aiotaskq import JobStatus, Queue
from aiotaskq._display import Progress, table


def by_name(queue: Queue, url: str) -> list[str]:
    return ["--queue", queue.name, "--url", url]


async def cli(*args: str, queue: Queue, url: str) -> tuple[int, str, str]:
    out = await run_cli(*args, env=cli_env(queue.name, url))
    return out.returncode, out.stdout.decode(), out.stderr.decode()


# -- job, jobs -----------------------------------------------------------------------------------


async def test_job_shows_every_field_as_text_and_json(queue: Queue, redis_url: str) -> None:
    @queue.task(name="fault.add")
    async def add(x: int, y: int) -> int:
        return x + y

    job = must(await add.options(priority=3).enqueue(20, 22))
    async with run_pool(queue):
        assert await job.result(timeout=5) == 42
    code, text, _ = await cli("job", APP, job.id, queue=queue, url=redis_url)
    assert code == 0
    lines = dict(line.split(None, 1) for line in text.splitlines()[1:] if not line.startswith("    "))
    assert lines["task"] == "fault.add" and lines["status"] == "succeeded" and lines["result"] == "42"
    assert lines["args"] == "[20, 22]" and lines["priority"] == "3" and lines["attempts"].startswith("1 ")
    assert {"enqueued", "started", "finished", "duration", "pool"} <= set(lines)
    assert "ago)" in lines["finished"]
    code, raw, _ = await cli("job", *by_name(queue, redis_url), job.id, "--json", queue=queue, url=redis_url)
    info = json.loads(raw)
    assert code == 0 and info["id"] == job.id and info["result"] == 42 and info["args"] == [20, 22]
    assert set(info) == set((await job.info()).__struct_fields__)  # every JobInfo field
    code, _, err = await cli("job", *by_name(queue, redis_url), "no-such-job", queue=queue, url=redis_url)
    assert code == 1 and "no job 'no-such-job'" in err


async def test_jobs_lists_a_page_filters_by_task_and_says_there_is_more(queue: Queue, redis_url: str) -> None:
    @queue.task(name="t.bad")
    async def bad(n: int) -> None:
        raise ValueError(f"bad {n}")

    @queue.task(name="t.worse")
    async def worse() -> None:
        raise KeyError("worse")

    jobs = [must(await bad.enqueue(n)) for n in range(5)] + [must(await worse.enqueue()) for _ in range(3)]
    async with run_pool(queue):
        for j in jobs:
            await wait_status(queue, j.id, JobStatus.FAILED)
    code, text, _ = await cli("jobs", *by_name(queue, redis_url), "--status", "failed", "--task", "t.bad",
                              "--limit", "3", queue=queue, url=redis_url)  # fmt: skip
    rows = text.splitlines()
    assert code == 0 and rows[0].split() == ["id", "task", "finished", "attempts", "error"]
    assert len(rows) == 5 and all(" t.bad " in r and "ValueError: bad" in r for r in rows[1:4])
    more = re.fullmatch(r"\.\.\. more: --offset (\d+) \(looked at (\d+) ids\)", rows[4])
    assert more and more[1] == more[2] and 3 <= int(more[1]) <= 6, rows[4]  # a position in the failed list
    code, raw, _ = await cli("jobs", *by_name(queue, redis_url), "--status", "failed", "--task", "t.bad",
                             "--offset", more[1], "--json", queue=queue, url=redis_url)  # fmt: skip
    page = json.loads(raw)
    assert code == 0 and page["next_offset"] is None
    assert [j["task"] for j in page["jobs"]] == ["t.bad", "t.bad"]
    listed = {j["id"] for j in page["jobs"]} | {r.split()[0] for r in rows[1:4]}
    assert listed == {j.id for j in jobs[:5]}  # the two pages: each bad job once
    code, text, _ = await cli("jobs", *by_name(queue, redis_url), "--status", "queued", queue=queue, url=redis_url)
    assert code == 0 and text.strip() == f"no queued jobs on queue {queue.name!r}"
    code, _, err = await cli("jobs", *by_name(queue, redis_url), "--status", "lost", queue=queue, url=redis_url)
    assert code == 2 and "invalid choice: 'lost'" in err


# -- cancel, requeue, purge ----------------------------------------------------------------------


async def test_cancel_stops_a_running_job_and_says_which_ids_it_could_not(queue: Queue, redis_url: str) -> None:
    started = anyio.Event()

    @queue.task(name="t.hang")
    async def hang() -> None:
        started.set()
        await anyio.sleep(60)

    job = must(await hang.enqueue())
    async with run_pool(queue):
        with anyio.fail_after(5):
            await started.wait()
        code, text, _ = await cli("cancel", *by_name(queue, redis_url), job.id, "gone", queue=queue, url=redis_url)
        await wait_status(queue, job.id, JobStatus.CANCELLED)
    assert code == 1  # one of the two was not cancelled
    assert f"job {job.id}: cancelled" in text and "job gone: not cancelled" in text


async def test_requeue_ids_or_every_failed_job(queue: Queue, redis_url: str) -> None:
    runs: dict[int, int] = {}

    @queue.task(name="t.flaky")
    async def flaky(n: int) -> int:
        runs[n] = runs.get(n, 0) + 1
        if runs[n] == 1:
            raise RuntimeError("first run")
        return n

    jobs = [must(await flaky.enqueue(n)) for n in range(6)]
    async with run_pool(queue):
        for j in jobs:
            await wait_status(queue, j.id, JobStatus.FAILED)
        code, text, _ = await cli("requeue", *by_name(queue, redis_url), jobs[0].id, "nope", queue=queue, url=redis_url)
        assert code == 1 and "requeued 1 of 2 job(s)" in text
        assert await jobs[0].result(timeout=5) == 0
        code, text, err = await cli("requeue", *by_name(queue, redis_url), "--all-failed", queue=queue, url=redis_url)
        assert code == 0 and f"requeued 5 failed job(s) on queue {queue.name!r}" in text
        assert err == ""  # no progress line without a terminal
        assert [await j.result(timeout=5) for j in jobs] == list(range(6))
    code, _, err = await cli("requeue", *by_name(queue, redis_url), queue=queue, url=redis_url)
    assert code == 2 and "give job ids, or --all-failed" in err


async def test_purge_asks_for_yes_without_a_terminal_then_deletes(queue: Queue, redis_url: str) -> None:
    for i in range(3):
        await queue.enqueue("t.any", delay=3600, job_id=f"later-{i}")
    code, _, err = await cli("purge", *by_name(queue, redis_url), "--status", "scheduled", queue=queue, url=redis_url)
    assert code == 2 and "add --yes" in err and "delete 3 scheduled job(s)" in err
    assert (await queue.counts())[JobStatus.SCHEDULED] == 3  # nothing deleted
    code, text, _ = await cli("purge", *by_name(queue, redis_url), "--status", "scheduled", "--yes",
                              queue=queue, url=redis_url)  # fmt: skip
    assert code == 0 and "purged 3 scheduled job(s)" in text
    assert (await queue.counts())[JobStatus.SCHEDULED] == 0
    code, _, err = await cli("purge", *by_name(queue, redis_url), "--status", "active", "--yes",
                             queue=queue, url=redis_url)  # fmt: skip
    assert code == 2 and "invalid choice: 'active'" in err


# -- enqueue -------------------------------------------------------------------------------------


async def test_enqueue_checks_the_arguments_against_the_module_s_task(queue: Queue, redis_url: str) -> None:
    code, text, _ = await cli("enqueue", APP, "fault.add", "--args", "[1, 2]", "--priority", "2",
                              queue=queue, url=redis_url)  # fmt: skip
    assert code == 0 and text.startswith("enqueued job ")
    job = queue.job(text.split()[2])
    info = await job.info()
    assert (info.task, info.args, info.priority) == ("fault.add", (1, 2), 2)
    for args, message in (
        (["--args", "[1]"], "cannot take these arguments"),
        (["--args", '{"x": 1}'], "--args: expected a JSON array"),
        (["--kwargs", "[1]"], "--kwargs: expected a JSON object"),
        (["--args", "[1,"], "--args: not JSON"),
        (["--args", "[1, 2]", "--delay", "-1"], "delay"),
    ):
        code, _, err = await cli("enqueue", APP, "fault.add", *args, queue=queue, url=redis_url)
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
    code, _, err = await cli("enqueue", APP, "fault.typo", queue=queue, url=redis_url)
    assert code == 2 and "no task 'fault.typo'" in err and "fault.add" in err
    code, _, _ = await cli("enqueue", APP, "fault.typo", "--any-task", queue=queue, url=redis_url)
    assert code == 0
    assert (await queue.counts())[JobStatus.QUEUED] == 2  # the two good ones, nothing from the bad input


async def test_enqueue_by_queue_name_alone_deduplicates_by_job_id(queue: Queue, redis_url: str) -> None:
    first = await cli("enqueue", *by_name(queue, redis_url), "any.task", "--kwargs", '{"to": "a@b.c"}',
                      "--job-id", "mail-1", "--json", queue=queue, url=redis_url)  # fmt: skip
    again = await cli("enqueue", *by_name(queue, redis_url), "any.task", "--job-id", "mail-1", "--json",
                      queue=queue, url=redis_url)  # fmt: skip
    assert first[0] == again[0] == 0
    assert json.loads(first[1]) == {"id": "mail-1", "enqueued": True}
    assert json.loads(again[1]) == {"id": "mail-1", "enqueued": False}
    assert (await queue.job("mail-1").info()).kwargs == {"to": "a@b.c"}


# -- check ---------------------------------------------------------------------------------------


async def test_check_exits_0_with_a_live_pool_and_1_without(queue: Queue, redis_url: str) -> None:
    code, text, _ = await cli("check", *by_name(queue, redis_url), queue=queue, url=redis_url)
    assert code == 1 and text.strip() == f"not ok: no live pool serves queue {queue.name!r}"
    # A pool on another host (its record as a pool writes it) counts, except with --this-host.
    await queue.redis.zadd(queue.keys.pools, {"elsewhere:1:x": int(await _now_ms(queue))})
    await queue.redis.set(queue.keys.pool_info("elsewhere:1:x"),
                          json.dumps({"host": "elsewhere", "pid": 1, "stale_timeout": 30}))  # fmt: skip
    code, text, _ = await cli("check", *by_name(queue, redis_url), queue=queue, url=redis_url)
    assert code == 0 and "ok: 1 live pool(s) serve" in text
    code, _, _ = await cli("check", *by_name(queue, redis_url), "--this-host", queue=queue, url=redis_url)
    assert code == 1
    async with run_pool(queue, idle=True) as pool:
        code, raw, _ = await cli("check", *by_name(queue, redis_url), "--this-host", "--json",
                                 queue=queue, url=redis_url)  # fmt: skip
    [entry] = json.loads(raw)
    assert code == 0 and entry["live_pools"] == 1
    assert entry["pools"][0]["id"] == pool.pool_ids[0] and entry["pools"][0]["host"] == socket.gethostname()
    assert entry["pools"][0]["pid"] == os.getpid()


async def test_check_does_not_count_a_pool_whose_heartbeat_is_stale(queue: Queue, redis_url: str) -> None:
    await queue.redis.zadd(queue.keys.pools, {"old:1:x": int(await _now_ms(queue)) - 60_000})
    await queue.redis.set(queue.keys.pool_info("old:1:x"), json.dumps({"host": "h", "stale_timeout": 30}))
    code, _, _ = await cli("check", *by_name(queue, redis_url), queue=queue, url=redis_url)
    assert code == 1


async def _now_ms(queue: Queue) -> int:
    sec, usec = await queue.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


# -- schedules, targets --------------------------------------------------------------------------


async def test_schedules_remove_one(queue: Queue, redis_url: str) -> None:
    await queue.schedule("nightly", "t.any", cron="0 3 * * *")
    code, text, _ = await cli(
        "schedules", *by_name(queue, redis_url), "--remove", "nightly", queue=queue, url=redis_url
    )
    assert code == 0 and "removed schedule 'nightly'" in text
    assert await queue.schedules() == []
    code, _, _ = await cli("schedules", *by_name(queue, redis_url), "--remove", "nightly", queue=queue, url=redis_url)
    assert code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "--status", "failed"], "give MODULE:ATTR (e.g. app.tasks:queue), or --queue NAME"),
        (["worker", "--queue", "q"], "the worker runs the tasks' code: give MODULE:ATTR"),
        (["jobs", APP, "--queue", "other", "--status", "failed"], "has no queue named 'other'"),
        (["jobs", APP, "--shards", "2", "--status", "failed"], "--shards: only with --queue alone"),
        (["jobs", "--queue", "q", "--shards", "0", "--status", "failed"], "shards: must be an integer"),
    ],
)
async def test_a_bad_target_is_one_line_and_exit_2(args: list[str], message: str, redis_url: str) -> None:
    out = await run_cli(*args, env=cli_env(url=redis_url))
    err = out.stderr.decode()
    assert out.returncode == 2 and message in err and err.count("\n") == 1, err


async def test_a_sharded_queue_by_name_and_shard_count(redis_url: str) -> None:
    q = Queue(f"adm-sharded-{os.getpid()}", url=redis_url, shards=3)
    try:
        for i in range(9):
            await q.enqueue("t.any", job_id=f"s{i}", delay=3600)
        out = await run_cli("jobs", "--queue", q.name, "--shards", "3", "--url", redis_url, "--status", "scheduled",
                            "--limit", "100", "--json", env=cli_env(url=redis_url))  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert {j["id"] for j in json.loads(out.stdout)["jobs"]} == {f"s{i}" for i in range(9)}
        per_shard = [await part.job_ids(JobStatus.SCHEDULED) for part in q.parts]
        assert sorted(x for ids in per_shard for x in ids) == sorted(f"s{i}" for i in range(9))
        assert all(per_shard)  # the jobs are spread: the CLI read every shard
    finally:
        await q.close()


# -- display -------------------------------------------------------------------------------------


def test_progress_draws_on_a_terminal_and_clears_its_line() -> None:
    out = io.StringIO()
    p = Progress("requeued", 2000, out, force=True)
    p.add(1000)
    p.close()
    assert out.getvalue() == "\rrequeued 1,000 of 2,000 (50%)\r\033[K"
    quiet = io.StringIO()
    q = Progress("requeued", 10, quiet)  # a StringIO is no terminal
    q.add(5)
    q.close()
    assert quiet.getvalue() == ""


def test_tables_align_and_cut_long_cells() -> None:
    text = table(["id", "error"], [["a", "x" * 70], ["bbb", "short"]])
    assert text.splitlines() == ["id   error", "a    " + "x" * 59 + "…", "bbb  short"]


async def test_wait_for_is_bounded() -> None:
    with pytest.raises(AssertionError, match="timed out"):
        await wait_for(lambda: False, 0.05, "never")


def test_generated_job_ids_never_look_like_an_option() -> None:
    from aiotaskq.queue import _new_id

    ids = [_new_id() for _ in range(20_000)]  # ~300 would start with '-' by chance
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids) and {len(i) for i in ids} == {16}


async def test_an_id_that_starts_with_a_dash_goes_after_a_double_dash(queue: Queue, redis_url: str) -> None:
    job = must(await queue.enqueue("t.any", job_id="-dash", delay=3600))
    code, text, _ = await cli("cancel", *by_name(queue, redis_url), "--", job.id, queue=queue, url=redis_url)
    assert code == 0 and "job -dash: cancelled" in text
