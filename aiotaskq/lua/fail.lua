-- fail: active -> scheduled (retry after a backoff) | failed (out of retries)
-- KEYS[1] job hash, KEYS[2] pool set of the owner pool, KEYS[3] scheduled zset
-- KEYS[4] failed zset, KEYS[5] stats hash, KEYS[6] idle set
-- ARGV[1] id, ARGV[2] pool id, ARGV[3] attempt number, ARGV[4] error text
-- ARGV[5] traceback, ARGV[6] retry delay ms (negative: do not retry)
-- ARGV[7] done channel, ARGV[8] wake channel
-- Returns 2 when retried, 3 when failed, -1 when this pool no longer owns this
-- attempt (fencing). The attempt already counted when it was claimed.
-- Time: Redis TIME.
local job_key, id, pool_id, attempt = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local f = redis.call('HMGET', job_key, 'status', 'pool', 'attempts', 'retries', 'start_at')
if f[1] ~= 'active' or f[2] ~= pool_id or f[3] ~= attempt then
  return -1
end
local now = now_ms()
local delay = tonumber(ARGV[6])
redis.call('SREM', KEYS[2], id)
redis.call('HSET', job_key, 'error', ARGV[4], 'tb', ARGV[5],
  'duration', int(now - (tonumber(f[5]) or now)))
if delay >= 0 and tonumber(f[3]) <= (tonumber(f[4]) or 0) then
  local due = now + delay
  redis.call('HSET', job_key, 'status', 'scheduled', 'due_at', int(due))
  redis.call('ZADD', KEYS[3], int(due), id)
  redis.call('HINCRBY', KEYS[5], 'retried', 1)
  wake(KEYS[6], ARGV[8])
  return 2
end
redis.call('HINCRBY', KEYS[5], 'failed', 1)
close_job(job_key, id, 'failed', KEYS[4], now, -1, ARGV[7])
return 3
