-- requeue: active -> queued, after a graceful shutdown cut the attempt short.
-- The attempt is not charged: attempts goes back down by one.
-- KEYS[1] job hash, KEYS[2] pool set of the owner pool, KEYS[3] queued zset
-- KEYS[4] idle set
-- ARGV[1] id, ARGV[2] pool id, ARGV[3] attempt number, ARGV[4] wake channel
-- Returns 1, or -1 when this pool no longer owns this attempt (fencing).
-- The job goes to the front of its priority band (sequence 0).
local job_key, id, pool_id, attempt = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local f = redis.call('HMGET', job_key, 'status', 'pool', 'attempts', 'prio')
if f[1] ~= 'active' or f[2] ~= pool_id or f[3] ~= attempt then
  return -1
end
redis.call('SREM', KEYS[2], id)
redis.call('HINCRBY', job_key, 'attempts', -1)
redis.call('HSET', job_key, 'status', 'queued')
redis.call('ZADD', KEYS[3], queue_score(f[4], 0), id)
wake(KEYS[4], ARGV[4])
return 1
