-- enqueue: (new) -> scheduled | queued, for a batch of jobs: the concurrent single enqueues
-- of a queue, coalesced (aiotaskq/_batcher.py), or a share of Task.enqueue_many
-- KEYS[1] queued zset     routes the call to the queue's hash slot; the other keys are
--                         built from the prefix: job:<id> hashes, scheduled, the queued
--                         bands (queued:<prio>), idle, stats, the ended zsets, and for a hand-off pool:<id>,
--                         inbox:<id> and tasks (see enqueue_job in _lib.lua)
-- ARGV[1] key prefix aiotaskq:{Q}:
-- then one or more groups, each the jobs in a row that share one option set:
--   task name, priority, max retries ('' = the task's default, resolved at claim),
--   timeout seconds ('' = none), delay ms ('' = none), due time as epoch ms ('' = none),
--   '1' when the producer generated the ids (no ended job can have one) else '',
--   expiry ms after the due time ('' = none: see pop_unexpired in _lib.lua),
--   concurrency key ('' = none: see key_admit in _lib.lua), parents ('' = none: each
--   <length>:<id>, see wait_for_parents), group mode ('' = not a group's callback),
--   the number n of jobs in the group, then n pairs: job id, payload (msgpack [args, kwargs]).
-- Returns one code per job, in order: 1 written, 0 a job with this id is scheduled, queued
-- or active (deduplication; of two jobs with one id in a call, the first is written). A job
-- due now goes to an idle pool's inbox when one has a free slot. (Batched: packing nine
-- keys and nine arguments per job cost producers more than the rest of enqueueing.)
-- Time: Redis TIME, read once, so a delay is measured on the clock that claims use.
local prefix = ARGV[1]
local now = now_ms()
local ids = {}
local i = 2
while i <= #ARGV do  -- every job's record read in one HMGET (the deduplication)
  local last = i + 11 + 2 * tonumber(ARGV[i + 11])
  for j = i + 12, last, 2 do
    ids[#ids + 1] = ARGV[j]
  end
  i = last + 1
end
prefetch(jobs, prefix, ids)
local out = {}
i = 2
while i <= #ARGV do
  local task, prio, retries, timeout, delay_ms, at_ms, fresh, expires = ARGV[i], ARGV[i + 1], ARGV[i + 2],
    ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6] == '1', ARGV[i + 7]
  local key, after, group = ARGV[i + 8], ARGV[i + 9], ARGV[i + 10]
  local last = i + 11 + 2 * tonumber(ARGV[i + 11])
  for j = i + 12, last, 2 do
    out[#out + 1] = enqueue_job(prefix, now, ARGV[j], task, ARGV[j + 1], prio, retries, timeout, delay_ms, at_ms,
      fresh, expires, key, after, group)
  end
  i = last + 1
end
flush()
return out
