-- unschedule: remove a recurring schedule (jobs it already enqueued are not touched)
-- KEYS[1] schedules hash, KEYS[2] schedules:next zset, KEYS[3] schedules:last hash
--         (see schedule_set.lua)
-- ARGV[1] schedule key
-- Returns 1 when removed, 0 when there was no such schedule.
-- Time: none read.
local key = ARGV[1]
redis.call('ZREM', KEYS[2], key)
redis.call('HDEL', KEYS[3], key)
return redis.call('HDEL', KEYS[1], key)
