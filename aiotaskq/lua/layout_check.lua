-- layout_check: does this queue hold jobs stored by an aiotaskq from before the jobs hash
-- (each job a hash job:<id>)? Pools run it when they register and refuse to serve such a
-- queue: their claims would find no record for those ids. Read-only.
-- KEYS[1] queued zset (bands; the other keys are built from the prefix)
-- ARGV[1] key prefix aiotaskq:{Q}:
-- Looks at the first 10 ids of `scheduled`, of each band, of each ended zset, and the jobs of
-- each live pool's set. Returns the id of one such job, or '' when none was found.
local prefix = ARGV[1]
local ids = {}
local function add(list)
  for _, id in ipairs(list) do
    ids[#ids + 1] = id
  end
end
add(redis.call('ZRANGE', prefix .. 'scheduled', 0, 9))
for _, prio in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  add(redis.call('LRANGE', band_key(prefix, prio), 0, 9))
end
for _, status in ipairs({'succeeded', 'failed', 'cancelled'}) do
  add(redis.call('ZRANGE', prefix .. status, 0, 9))
end
for _, p in ipairs(redis.call('ZRANGE', prefix .. 'pools', 0, -1)) do
  add(redis.call('SMEMBERS', pool_key(prefix, p)))  -- at most its concurrency
end
for _, id in ipairs(ids) do
  if redis.call('TYPE', prefix .. 'job:' .. id)['ok'] == 'hash' then
    return id
  end
end
return ''
