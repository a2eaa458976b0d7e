-- purge: scheduled | queued | succeeded | failed | cancelled -> (deleted)
-- KEYS[1] the status zset (for queued: the bands zset; its band lists queued:<prio> are
--         built from the prefix)
-- ARGV[1] key prefix aiotaskq:{Q}:, ARGV[2] status name, ARGV[3] batch size
-- Deletes up to `batch size` jobs listed there (for queued: from the highest band) whose
-- record still has that status, with their data. Returns {ids taken off, jobs deleted}.
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
local code = CODE[status]
local deleted = 0
if status == 'scheduled' or status == 'queued' then
  prefetch(jobs, prefix, ids)
  prefetch(actives, prefix, ids)
  for _, id in ipairs(ids) do
    local raw = cache_get(jobs, prefix, id)
    if raw and raw:sub(1, 1) == code and not cache_get(actives, prefix, id) then
      cache_del(jobs, prefix, id)
      deleted = deleted + 1
    end
  end
  flush()
else
  for _, id in ipairs(ids) do
    local key = prefix .. 'job:' .. id
    local raw = redis.call('GET', key)
    if raw and raw:sub(1, 1) == code then
      redis.call('DEL', key)
      deleted = deleted + 1
    end
  end
end
return {#ids, deleted}
