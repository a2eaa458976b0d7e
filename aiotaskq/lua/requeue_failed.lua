-- requeue_failed: failed -> queued (attempts and last error reset)
-- KEYS[1] failed zset, KEYS[2] queued zset (bands), KEYS[3] idle zset
-- ARGV[1] key prefix aiotaskq:{Q}:, ARGV[2] batch size
-- ARGV[4..] ids to requeue; with none, the oldest `batch size` failed jobs.
-- Returns how many jobs were requeued (ids that are not failed are skipped).
local prefix = ARGV[1]
local ids = {}
for i = 3, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
if #ids == 0 then
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
prefetch(jobs, prefix, ids)
local n = 0
for _, id in ipairs(ids) do
  local key = prefix .. 'job:' .. id
  local ended = redis.call('GET', key)
  local st, _, _, _, _, _, _, rec
  if ended then
    st, _, _, _, _, _, _, rec = ended_parts(ended)
  end
  local r = st == 'F' and not cache_get(jobs, prefix, id) and parse(rec)
  if r then
    redis.call('DEL', key)
    r[R_STATUS], r[R_ATTEMPTS], r.err, r.tb = 'q', '', '', ''
    cache_put(jobs, prefix, id, build(r))
    push_queued(prefix, r[R_PRIO], id)
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], id)
end
flush()
if n > 0 then
  wake(KEYS[3], prefix)
end
return n
