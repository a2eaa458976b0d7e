-- finish: active -> succeeded | cancelled (the attempt ended; no retry)
-- KEYS[1] job hash, KEYS[2] pool set of the owner pool
-- KEYS[3] end-state zset (succeeded or cancelled), KEYS[4] stats hash
-- ARGV[1] id, ARGV[2] pool id, ARGV[3] attempt number, ARGV[4] end status
-- ARGV[5] result (msgpack, '' for none), ARGV[6] keep ms, ARGV[7] done channel
-- Returns 1, or -1 when this pool no longer owns this attempt (fencing: the
-- outcome of an attempt that was taken away is dropped).
-- Time: Redis TIME.
local code = finish_job(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
  ARGV[6], ARGV[7], now_ms())
flush()
return code
