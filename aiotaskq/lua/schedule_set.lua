-- schedule_set: upsert a recurring schedule; an unchanged spec keeps its next run
-- KEYS[1] schedules hash       schedule key -> spec (msgpack)
-- KEYS[2] schedules:next zset  schedule key -> next run (epoch ms); absent once a schedule ended
-- KEYS[3] schedules:last hash  schedule key -> tick (epoch ms) of the last job it enqueued
-- ARGV[1] schedule key, ARGV[2] spec
-- ARGV[3] next run (epoch ms) for a new or changed spec ('' = none: the schedule has ended)
-- ARGV[4] channel that wakes the pools' schedulers
-- Returns {1 written | 0 unchanged, stored next run ms or '', last tick ms or ''}.
-- Time: none read here; the caller computed the next run from Redis TIME. Keeping the
-- next run of an unchanged spec means a pool restarting after a downtime (it upserts the
-- schedules declared in its code) does not hide the missed ticks from the misfire policy.
local key, spec, next_run = ARGV[1], ARGV[2], ARGV[3]
local changed = 0
if redis.call('HGET', KEYS[1], key) ~= spec then
  changed = 1
  redis.call('HSET', KEYS[1], key, spec)
  if next_run == '' then
    redis.call('ZREM', KEYS[2], key)
  else
    redis.call('ZADD', KEYS[2], next_run, key)
  end
  publish(ARGV[4], key)
end
local stored = redis.call('ZSCORE', KEYS[2], key)
return {changed, stored and int(tonumber(stored)) or '', redis.call('HGET', KEYS[3], key) or ''}
