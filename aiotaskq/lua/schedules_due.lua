-- schedules_due: the schedules whose next run has come, for a pool's scheduler to plan
-- KEYS[1] schedules:next zset  schedule key -> next run (epoch ms)
-- KEYS[2] schedules hash       schedule key -> spec (msgpack)
-- ARGV[1] most schedules to return
-- ARGV[2] a random integer: when more are due than fit, where in the due list to start,
--         so that pools woken together mostly plan different schedules
-- Returns {now ms, ms until the earliest next run still to come (-1: none),
--          key, next run ms, spec ('' if missing), key, next run ms, spec, ...}.
-- Time: Redis TIME, so a pool whose clock runs ahead never sees a schedule due early
-- (and tick.lua checks again).
local limit = tonumber(ARGV[1])
local now = now_ms()
local out = {int(now), -1}
local due = redis.call('ZCOUNT', KEYS[1], '-inf', int(now))
if due > 0 then
  local offset = 0
  if due > limit then
    offset = tonumber(ARGV[2]) % (due - limit + 1)
  end
  local got = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'WITHSCORES', 'LIMIT', offset, limit)
  for i = 1, #got, 2 do
    out[#out + 1] = got[i]
    out[#out + 1] = int(tonumber(got[i + 1]))
    out[#out + 1] = redis.call('HGET', KEYS[2], got[i]) or ''
  end
end
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. int(now), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if first[2] then
  out[2] = int(tonumber(first[2]) - now)
end
return out
