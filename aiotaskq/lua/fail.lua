-- fail: active -> scheduled (retry after a backoff) | failed (out of retries)
-- KEYS[1] job hash, KEYS[2] pool set of the owner pool, KEYS[3] scheduled zset
-- KEYS[4] failed zset, KEYS[5] stats hash, KEYS[6] idle zset
-- ARGV[1] id, ARGV[2] pool id, ARGV[3] attempt number, ARGV[4] error text
-- ARGV[5] traceback, ARGV[6] retry delay ms (negative: do not retry)
-- ARGV[7] done channel, ARGV[8] key prefix aiotaskq:{Q}: (wakes idle pools through their inboxes)
-- Returns 2 when retried, 3 when failed, -1 when this pool no longer owns this
-- attempt (fencing). The attempt already counted when it was claimed.
-- Time: Redis TIME.
local code = fail_job(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[1], ARGV[2], ARGV[3],
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], now_ms())
flush()
return code
