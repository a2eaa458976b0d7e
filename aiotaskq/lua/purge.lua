-- purge: scheduled | queued | succeeded | failed | cancelled -> (deleted)
-- KEYS[1] the status zset
-- ARGV[1] key prefix aiotaskq:{Q}:, ARGV[2] status name, ARGV[3] batch size
-- Deletes up to `batch size` jobs listed in the zset whose hash still has that
-- status, with their data. Returns {ids taken off the zset, jobs deleted}.
local prefix, status = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
local deleted = 0
for _, id in ipairs(ids) do
  local job_key = prefix .. 'job:' .. id
  if redis.call('HGET', job_key, 'status') == status then
    redis.call('DEL', job_key)
    deleted = deleted + 1
  end
  redis.call('ZREM', KEYS[1], id)
end
return {#ids, deleted}
