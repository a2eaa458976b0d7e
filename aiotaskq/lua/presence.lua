-- presence: a pool's tick (every fraction of a second): it is alive, and which connection
-- of its Redis would close if its process died
-- KEYS[1] pools zset (pool id -> last heartbeat ms), KEYS[2] alive zset (pool id -> ms until
--         which it counts as alive), KEYS[3] presence hash (pool id -> "<run id>:<client id>",
--         the Redis server run and the CLIENT ID of the pool's presence connection)
-- ARGV[1] pool id, ARGV[2] ms the pool counts as alive from now
-- ARGV[3] the pool's presence record ('' = unchanged since its last tick)
-- ARGV[4] grace ms: a pool is a suspect once its alive time is this far in the past
-- Returns {code, pool id, record, pool id, record, ...}: code 0 when this pool is not
-- registered (it was declared dead: its heartbeat registers it afresh; nothing is written),
-- else 1, then up to 20 other registered pools past their alive time by more than the
-- grace, each with its presence record ('' when it has none). The caller asks Redis whether
-- those connections still exist (CLIENT LIST cannot run in a script) and passes the pools
-- whose connection is gone to reap.lua: a missed tick plus a closed connection is the
-- evidence of a dead process (SIGKILL, OOM kill), much stronger than a heartbeat's age.
-- Time: Redis TIME, so that skewed clocks cannot make a pool look dead or alive.
local pool_id, alive_ms, record, grace_ms = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if not redis.call('ZSCORE', KEYS[1], pool_id) then
  return {0}
end
local now = now_ms()
redis.call('ZADD', KEYS[2], int(now + alive_ms), pool_id)
if record ~= '' then
  redis.call('HSET', KEYS[3], pool_id, record)
end
local out = {1}
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. int(now - grace_ms), 'LIMIT', 0, 21)) do
  if p ~= pool_id and #out < 41 then
    if redis.call('ZSCORE', KEYS[1], p) then
      out[#out + 1] = p
      out[#out + 1] = redis.call('HGET', KEYS[3], p) or ''
    else  -- left or reaped meanwhile: forget it
      redis.call('ZREM', KEYS[2], p)
      redis.call('HDEL', KEYS[3], p)
    end
  end
end
return out
