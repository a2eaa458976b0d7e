-- heartbeat: a pool says it is alive (and registers with ARGV[2] = '1')
-- KEYS[1] pools zset (pool id -> last heartbeat ms), KEYS[2] pool info string
-- KEYS[3] pool set (ids the pool holds)
-- ARGV[1] pool id, ARGV[2] '1' to register, ARGV[3] info (JSON), ARGV[4] info ttl ms
-- ARGV[5] key prefix aiotaskq:{Q}:, ARGV[6] ms the pool counts as alive from now (see `alive`
-- in _lib.lua; '' = leave it alone)
-- Returns {alive, id...}: alive 0 means the pool was declared dead (reaped) and
-- must register afresh under a new id; the ids are jobs it holds whose
-- cancellation was asked (a missed abort message is caught up here).
-- Time: Redis TIME, so a pool's clock cannot make it look alive or dead.
local pool_id = ARGV[1]
if ARGV[2] ~= '1' and not redis.call('ZSCORE', KEYS[1], pool_id) then
  return {0}
end
local now = now_ms()
redis.call('ZADD', KEYS[1], int(now), pool_id)
if (ARGV[6] or '') ~= '' then
  redis.call('ZADD', ARGV[5] .. 'alive', int(now + tonumber(ARGV[6])), pool_id)
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
local out = {1}
local ids = redis.call('SMEMBERS', KEYS[3])
prefetch(actives, ARGV[5], ids)
for _, id in ipairs(ids) do
  local a = cache_get(actives, ARGV[5], id)
  if a and select(4, active_fields(a)) == '1' then
    out[#out + 1] = id
  end
end
return out
