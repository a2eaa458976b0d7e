-- enqueue: (new) -> scheduled | queued
-- KEYS[1] job hash        aiotaskq:{Q}:job:<id>
-- KEYS[2] scheduled zset  due time (ms) -> id
-- KEYS[3] queued zset     priority/FIFO score -> id
-- KEYS[4] seq string      FIFO counter
-- KEYS[5] idle set        pools waiting for work
-- KEYS[6] stats hash
-- KEYS[7..9] succeeded, failed, cancelled zsets (a finished job with this id is replaced)
-- ARGV[1] id, ARGV[2] task name, ARGV[3] payload (msgpack [args, kwargs])
-- ARGV[4] priority, ARGV[5] max retries, ARGV[6] timeout seconds ('' = none)
-- ARGV[7] delay ms ('' = none), ARGV[8] due time as epoch ms ('' = none)
-- ARGV[9] wake channel
-- Returns 1 when written, 0 when a job with this id is scheduled, queued or active.
-- Time: Redis TIME, so a delay is measured on the clock that claims use.
local job_key = KEYS[1]
local id, task, payload, prio = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local retries, timeout, delay_ms, at_ms = ARGV[5], ARGV[6], ARGV[7], ARGV[8]

local status = redis.call('HGET', job_key, 'status')
if status == 'scheduled' or status == 'queued' or status == 'active' then
  return 0
end
if status then
  redis.call('DEL', job_key)
  redis.call('ZREM', KEYS[7], id)
  redis.call('ZREM', KEYS[8], id)
  redis.call('ZREM', KEYS[9], id)
end

local now = now_ms()
local due = now
if at_ms ~= '' then
  due = tonumber(at_ms)
elseif delay_ms ~= '' then
  due = now + tonumber(delay_ms)
end

if due > now then
  status = 'scheduled'
  redis.call('ZADD', KEYS[2], int(due), id)
else
  status = 'queued'
  redis.call('ZADD', KEYS[3], queue_score(prio, redis.call('INCR', KEYS[4])), id)
end
redis.call('HSET', job_key, 'task', task, 'payload', payload, 'status', status,
  'prio', prio, 'attempts', 0, 'retries', retries, 'timeout', timeout,
  'enq_at', int(now), 'due_at', int(due))
redis.call('HINCRBY', KEYS[6], 'enqueued', 1)
wake(KEYS[5], ARGV[9])
return 1
