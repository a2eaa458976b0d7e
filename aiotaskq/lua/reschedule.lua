-- reschedule: scheduled | queued | failed | cancelled -> scheduled
-- KEYS[1] job hash, KEYS[2] scheduled zset, KEYS[3] queued zset (bands)
-- KEYS[4] failed zset, KEYS[5] cancelled zset, KEYS[6] idle zset
-- ARGV[1] id, ARGV[2] delay ms ('' = none), ARGV[3] due time epoch ms ('' = none)
-- ARGV[4] key prefix aiotaskq:{Q}: (the job's band list; wakes idle pools)
-- Returns 1 when rescheduled, 0 when the job is missing, active or succeeded.
-- A failed or cancelled job starts over: attempts and the last error are reset.
-- Time: Redis TIME for a delay.
local job_key, id = KEYS[1], ARGV[1]
local f = redis.call('HMGET', job_key, 'status', 'prio')
local status = f[1]
if status ~= 'scheduled' and status ~= 'queued' and status ~= 'failed' and status ~= 'cancelled' then
  return 0
end
local now = now_ms()
local due = now
if ARGV[3] ~= '' then
  due = tonumber(ARGV[3])
elseif ARGV[2] ~= '' then
  due = now + tonumber(ARGV[2])
end
if status == 'queued' then
  remove_queued(ARGV[4], f[2], id)
else
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
end
if status == 'failed' or status == 'cancelled' then
  redis.call('HSET', job_key, 'attempts', 0)
  redis.call('HDEL', job_key, 'end_at', 'error', 'tb', 'result', 'cancel', 'duration', 'progress', 'progress_note')
  redis.call('PERSIST', job_key)
end
redis.call('HSET', job_key, 'status', 'scheduled', 'due_at', int(due))
redis.call('ZADD', KEYS[2], int(due), id)
wake(KEYS[6], ARGV[4])
return 1
