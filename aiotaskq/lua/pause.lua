-- pause: the queue hands out nothing (ARGV[1] '1'), or again (ARGV[1] '0')
-- KEYS[1] paused string (its presence pauses the queue), KEYS[2] idle zset
-- ARGV[1] '1' pause | '0' resume, ARGV[2] key prefix aiotaskq:{Q}:
-- While the key exists, claim.lua takes no job from `queued` (it still returns the records
-- already handed to the pool) and enqueue hands no job to an idle pool: jobs wait in
-- `queued`. Resuming wakes the idle pools (an empty entry in each inbox), which claim at once.
-- Returns 1 when the state changed, 0 when it already was so.
if ARGV[1] == '1' then
  return redis.call('SET', KEYS[1], '1', 'NX') and 1 or 0
end
local changed = redis.call('DEL', KEYS[1])
wake(KEYS[2], ARGV[2])
return changed
