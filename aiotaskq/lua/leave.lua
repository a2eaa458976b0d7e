-- leave: a pool that holds no jobs unregisters on shutdown
-- KEYS[1] pools zset, KEYS[2] pool info string, KEYS[3] pool set, KEYS[4] idle zset
-- KEYS[5] inbox list of the pool, KEYS[6] alive zset, KEYS[7] presence hash
-- ARGV[1] pool id
-- Returns 1 when it left, 0 when it still holds jobs (they stay with it until
-- the stale-pool reaper requeues them, so nothing is orphaned: its alive time and
-- presence record stay, so that it is reaped as soon as its process is gone).
redis.call('ZREM', KEYS[4], ARGV[1])
if redis.call('SCARD', KEYS[3]) > 0 then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[5])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
return 1
