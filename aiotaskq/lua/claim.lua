-- claim: scheduled -> queued (due ones), then queued -> active (a batch)
-- KEYS[1] scheduled zset, KEYS[2] queued zset, KEYS[3] pools zset (pool id -> heartbeat ms)
-- KEYS[4] pool set        aiotaskq:{Q}:pool:<pool id>, the ids this pool holds
-- KEYS[5] seq string, KEYS[6] idle set
-- KEYS[7] tasks hash      task name -> default max retries, for jobs enqueued by
--                         name by a producer that did not know the task
-- ARGV[1] pool id, ARGV[2] max jobs to claim, ARGV[3] key prefix aiotaskq:{Q}:
-- Returns {code, next_due_in_ms, id, task, payload, attempts, retries, timeout, ...}:
--   code -1: this pool is not registered (declared dead): register afresh first.
--   next_due_in_ms: ms until the earliest scheduled job (-1 when none).
-- Status, owner pool and start time are set in the same call that pops the job,
-- so a claimed job never looks unclaimed. Time: Redis TIME (due times).
local pool_id, want, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if not redis.call('ZSCORE', KEYS[3], pool_id) then
  return {-1, -1}
end
local now = now_ms()

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  local job_key = prefix .. 'job:' .. id
  local f = redis.call('HMGET', job_key, 'status', 'prio')
  if f[1] then
    redis.call('ZADD', KEYS[2], queue_score(f[2], redis.call('INCR', KEYS[5])), id)
    redis.call('HSET', job_key, 'status', 'queued')
  end
  redis.call('ZREM', KEYS[1], id)
end

local out = {0, -1}
local got = 0
if want > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], want)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local job_key = prefix .. 'job:' .. id
    local f = redis.call('HMGET', job_key, 'task', 'payload', 'retries', 'timeout')
    if f[1] then
      if not f[3] or f[3] == '' then
        f[3] = redis.call('HGET', KEYS[7], f[1]) or '0'
        redis.call('HSET', job_key, 'retries', f[3])
      end
      local attempts = redis.call('HINCRBY', job_key, 'attempts', 1)
      redis.call('HSET', job_key, 'status', 'active', 'pool', pool_id, 'start_at', int(now))
      redis.call('SADD', KEYS[4], id)
      out[#out + 1] = id
      out[#out + 1] = f[1]
      out[#out + 1] = f[2]
      out[#out + 1] = attempts
      out[#out + 1] = f[3]
      out[#out + 1] = f[4] or ''
      got = got + 1
    end
  end
end
if got < want then
  redis.call('SADD', KEYS[6], pool_id)
end

local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then
  out[2] = math.max(0, tonumber(first[2]) - now)
end
return out
