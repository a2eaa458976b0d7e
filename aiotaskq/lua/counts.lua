-- counts: read-only; the number of jobs in each status
-- KEYS[1] scheduled, KEYS[2] queued (bands; their lists queued:<prio> are built from the
-- prefix), KEYS[3] pools, KEYS[4] succeeded, KEYS[5] failed, KEYS[6] cancelled (zsets)
-- ARGV[1] key prefix aiotaskq:{Q}:
-- Returns {scheduled, queued, active, succeeded, failed, cancelled}; active is
-- the sum of the live pools' sets.
local active = 0
for _, pool_id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  active = active + redis.call('SCARD', ARGV[1] .. 'pool:' .. pool_id)
end
local queued = 0
for _, prio in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  queued = queued + redis.call('LLEN', band_key(ARGV[1], prio))
end
for _, task in ipairs(redis.call('ZRANGE', ARGV[1] .. 'held', 0, -1)) do  -- rate-limited tasks' held jobs
  queued = queued + redis.call('LLEN', ARGV[1] .. 'held:' .. task)
end
return {redis.call('ZCARD', KEYS[1]), queued, active,
  redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[5]), redis.call('ZCARD', KEYS[6])}
