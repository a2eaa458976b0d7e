-- finish: active -> succeeded | cancelled (the attempt ended; no retry)
-- KEYS[1] job hash, KEYS[2] pool set of the owner pool
-- KEYS[3] end-state zset (succeeded or cancelled), KEYS[4] stats hash
-- ARGV[1] id, ARGV[2] pool id, ARGV[3] attempt number, ARGV[4] end status
-- ARGV[5] result (msgpack, '' for none), ARGV[6] keep ms, ARGV[7] done channel
-- Returns 1, or -1 when this pool no longer owns this attempt (fencing: the
-- outcome of an attempt that was taken away is dropped).
-- Time: Redis TIME.
local job_key, id, pool_id, attempt = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local f = redis.call('HMGET', job_key, 'status', 'pool', 'attempts', 'start_at')
if f[1] ~= 'active' or f[2] ~= pool_id or f[3] ~= attempt then
  return -1
end
local now = now_ms()
redis.call('SREM', KEYS[2], id)
redis.call('HSET', job_key, 'result', ARGV[5], 'duration', int(now - (tonumber(f[4]) or now)))
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
close_job(job_key, id, ARGV[4], KEYS[3], now, ARGV[6], ARGV[7])
return 1
