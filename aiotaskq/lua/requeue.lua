-- requeue: active -> queued, after a graceful shutdown cut the attempt short.
-- The attempt is not charged: attempts goes back down by one.
-- KEYS[1] job:<id>, KEYS[2] pool set of the owner pool, KEYS[3] queued zset (bands)
-- KEYS[4] idle zset
-- ARGV[1] id, ARGV[2] pool id, ARGV[3] attempt number, ARGV[4] key prefix aiotaskq:{Q}:
-- (the jobs hash and the keys above are built from it)
-- Returns 1, or -1 when this pool no longer owns this attempt (fencing).
-- The job goes to the front of its priority band.
local code = give_back_job(ARGV[4], ARGV[1], ARGV[2], ARGV[3])
flush()
return code
