-- purge: scheduled | queued | succeeded | failed | cancelled -> (deleted)
-- KEYS[1] the status zset (for queued: the bands zset; its band lists queued:<prio> are
--         built from the prefix)
-- ARGV[1] key prefix aiotaskq:{Q}:, ARGV[2] status name, ARGV[3] batch size
-- Deletes up to `batch size` jobs listed there (for queued: from the highest band) whose
-- hash still has that status, with their data. Returns {ids taken off, jobs deleted}.
local prefix, status, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ids
if status == 'queued' then
  ids = pop_queued(prefix, batch)
else
  ids = redis.call('ZRANGE', KEYS[1], 0, batch - 1)
  for i = 1, #ids, 1000 do
    redis.call('ZREM', KEYS[1], unpack(ids, i, math.min(i + 999, #ids)))
  end
end
local deleted = 0
for _, id in ipairs(ids) do
  local job_key = prefix .. 'job:' .. id
  if redis.call('HGET', job_key, 'status') == status then
    redis.call('DEL', job_key)
    deleted = deleted + 1
  end
end
return {#ids, deleted}
