-- delete: succeeded | failed | cancelled -> (deleted), by id (the dashboard's and the CLI's delete)
-- KEYS[1] succeeded zset, KEYS[2] failed zset, KEYS[3] cancelled zset
-- ARGV[1] key prefix aiotaskq:{Q}:, ARGV[2...] job ids
-- Deletes each job that has ended: its record job:<id> and its entry in its end-state zset. A
-- job still scheduled, queued or active is left alone (cancel it), as is a missing one.
-- Returns how many were deleted.
local prefix = ARGV[1]
local zset_of = {S = KEYS[1], F = KEYS[2], C = KEYS[3]}
local deleted = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local key = prefix .. 'job:' .. id
  local raw = redis.call('GET', key)
  local zset = raw and zset_of[raw:sub(1, 1)]
  if zset and not redis.call('HGET', prefix .. 'jobs', id) then
    redis.call('DEL', key, prefix .. 'gres:' .. id)  -- (a group's callback: its members' results)
    redis.call('HDEL', prefix .. 'groups', id)
    redis.call('ZREM', zset, id)
    deleted = deleted + 1
  end
end
return deleted
