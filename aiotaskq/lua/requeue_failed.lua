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
local n = 0
for _, id in ipairs(ids) do
  local job_key = prefix .. 'job:' .. id
  local f = redis.call('HMGET', job_key, 'status', 'prio')
  if f[1] == 'failed' then
    redis.call('HSET', job_key, 'status', 'queued', 'attempts', 0)
    redis.call('HDEL', job_key, 'end_at', 'error', 'tb', 'duration', 'progress', 'progress_note')
    push_queued(prefix, f[2], id)
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], id)
end
if n > 0 then
  wake(KEYS[3], prefix)
end
return n
