-- finish: active -> succeeded | cancelled (the attempt ended; no retry)
-- KEYS[1] job:<id> (the ended record), KEYS[2] pool set of the owner pool
-- KEYS[3] end-state zset (succeeded or cancelled), KEYS[4] stats hash
-- ARGV[1] id, ARGV[2] pool id, ARGV[3] attempt number, ARGV[4] end status
-- ARGV[5] result (msgpack, '' for none), ARGV[6] keep ms, ARGV[7] done channel
-- ARGV[8] key prefix aiotaskq:{Q}: (the jobs hash and the keys above are built from it)
-- Returns 1, or -1 when this pool no longer owns this attempt (fencing: the
-- outcome of an attempt that was taken away is dropped).
-- Time: Redis TIME.
local code = finish_job(ARGV[8], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], now_ms())
flush()
return code
