-- requeue: active -> queued, after a graceful shutdown cut the attempt short.
-- The attempt is not charged: attempts goes back down by one.
-- KEYS[1] job hash, KEYS[2] pool set of the owner pool, KEYS[3] queued zset (bands)
-- KEYS[4] idle zset
-- ARGV[1] id, ARGV[2] pool id, ARGV[3] attempt number, ARGV[4] key prefix aiotaskq:{Q}: (wakes idle pools)
-- Returns 1, or -1 when this pool no longer owns this attempt (fencing).
-- The job goes to the front of its priority band.
local code = give_back_job(KEYS[1], KEYS[2], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
flush()
return code
