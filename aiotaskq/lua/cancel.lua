-- cancel: scheduled | queued -> cancelled; active -> (abort asked of its pool)
-- KEYS[1] job hash, KEYS[2] scheduled zset, KEYS[3] queued zset (bands)
-- KEYS[4] cancelled zset, KEYS[5] stats hash
-- ARGV[1] id, ARGV[2] keep ms when nothing better is known (the caller's queue's keep_result)
-- ARGV[3] done channel, ARGV[4] abort channel
-- ARGV[5] key prefix aiotaskq:{Q}: (the job's band list, the keep hash)
-- ARGV[6..] pairs of task name and keep ms: the tasks the caller knows
-- A job cancelled here is kept for its task's keep time: the caller's value for the
-- job's task, else the one pools registered (see task_keep), else ARGV[2].
-- Returns 1 when cancelled, 2 when the running attempt was asked to stop
-- (the owner pool cancels it and records `cancelled`; if that pool dies
-- first, the stale-pool reaper records it), 0 when the job is missing or
-- already finished. Time: Redis TIME.
local job_key, id = KEYS[1], ARGV[1]
local f = redis.call('HMGET', job_key, 'status', 'prio', 'task')
local status = f[1]
if status == 'scheduled' or status == 'queued' then
  if status == 'scheduled' then
    redis.call('ZREM', KEYS[2], id)
  else
    remove_queued(ARGV[5], f[2], id)
  end
  redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
  local keep = task_keep(ARGV[5], f[3], ARGV[2], ARGV, 6)
  close_job(job_key, id, 'cancelled', KEYS[4], now_ms(), keep, ARGV[3])
  flush()
  return 1
end
if status == 'active' then
  redis.call('HSET', job_key, 'cancel', '1')
  redis.call('PUBLISH', ARGV[4], id)
  return 2
end
return 0
