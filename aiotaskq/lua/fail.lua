-- fail: active -> scheduled (retry after a backoff) | failed (out of retries)
-- KEYS[1] job:<id> (the ended record), KEYS[2] pool set of the owner pool, KEYS[3] scheduled zset
-- KEYS[4] failed zset, KEYS[5] stats hash, KEYS[6] idle zset
-- ARGV[1] id, ARGV[2] pool id, ARGV[3] attempt number, ARGV[4] error text
-- ARGV[5] traceback, ARGV[6] retry delay ms (negative: do not retry)
-- ARGV[7] done channel, ARGV[8] key prefix aiotaskq:{Q}: (the jobs hash and the keys above
-- are built from it)
-- Returns 2 when retried, 3 when failed, -1 when this pool no longer owns this
-- attempt (fencing). The attempt already counted when it was claimed.
-- Time: Redis TIME.
local code = fail_job(ARGV[8], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], now_ms())
flush()
return code
