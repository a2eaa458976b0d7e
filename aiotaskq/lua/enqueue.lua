-- enqueue: (new) -> scheduled | queued, for one job or a batch of one task's jobs that
-- share one option set (Task.enqueue_many)
-- KEYS[1] queued zset     routes the call to the queue's hash slot; the other keys are
--                         built from the prefix: job:<id> hashes, scheduled, the queued
--                         bands (queued:<prio>), idle, stats, the ended zsets, and for a hand-off pool:<id>,
--                         inbox:<id> and tasks (see enqueue_job in _lib.lua)
-- ARGV[1] key prefix aiotaskq:{Q}:, ARGV[2] task name, ARGV[3] priority
-- ARGV[4] max retries ('' = the task's default, resolved at claim)
-- ARGV[5] timeout seconds ('' = none), ARGV[6] delay ms ('' = none)
-- ARGV[7] due time as epoch ms ('' = none)
-- ARGV[8], ARGV[9]: id and payload (msgpack [args, kwargs]) of the first job;
-- ARGV[10], ARGV[11] of the second; and so on.
-- Returns one code per job: 1 written, 0 a job with this id is scheduled, queued or
-- active (deduplication). A job due now goes to an idle pool's inbox when one has a
-- free slot. (Batched: packing nine keys and nine arguments per job cost producers
-- more than the rest of enqueueing.)
-- Time: Redis TIME, read once, so a delay is measured on the clock that claims use.
local prefix, task = ARGV[1], ARGV[2]
local now = now_ms()
local out = {}
for i = 1, (#ARGV - 7) / 2 do
  out[i] = enqueue_job(prefix, now, ARGV[6 + 2 * i], task, ARGV[7 + 2 * i], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
    ARGV[7])
end
flush()
return out
