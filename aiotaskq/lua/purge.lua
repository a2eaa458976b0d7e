-- purge: scheduled | queued | succeeded | failed | cancelled -> (deleted)
-- KEYS[1] the status zset (for queued: the bands zset; its band lists queued:<prio> are
--         built from the prefix)
-- ARGV[1] key prefix aiotaskq:{Q}:, ARGV[2] status name, ARGV[3] batch size
-- Deletes up to `batch size` jobs listed there (for queued: from the highest band) whose
-- record still has that status, with their data. Returns {ids taken off, jobs deleted}.
-- A purged job that waited for parents leaves their sets; the waiting children of a purged
-- job fail with DependencyFailed ("was purged"), as if it had failed (see settle_dependents).
local prefix, status, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ids
if status == 'queued' then
  ids = pop_queued(prefix, batch)
  for _, task in ipairs(#ids < batch and redis.call('ZRANGE', prefix .. 'held', 0, 99) or {}) do
    -- then the held jobs of rate-limited tasks (see release_held in _lib.lua)
    local list = prefix .. 'held:' .. task
    for _, id in ipairs(redis.call('LPOP', list, batch - #ids) or {}) do
      ids[#ids + 1] = id
    end
    if redis.call('EXISTS', list) == 0 then
      redis.call('ZREM', prefix .. 'held', task)
    end
    if #ids >= batch then
      break
    end
  end
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
      if redis.call('HDEL', prefix .. 'groups', id) == 1 then  -- a pending group's callback
        redis.call('DEL', prefix .. 'gres:' .. id)
      end
      if waiting_on_parents(prefix) then
        forget_parents(prefix, id, raw)
        if redis.call('EXISTS', prefix .. 'children:' .. id) == 1 then
          later.ended[#later.ended + 1] = {prefix, id, 'purged', '', '', now_ms()}
        end
      end
    end
  end
  for i = 1, #ids, 1000 do  -- expiries to watch no more (options(expires=...))
    redis.call('ZREM', prefix .. 'expires', unpack(ids, i, math.min(i + 999, #ids)))
  end
  flush()
else
  for _, id in ipairs(ids) do
    local key = prefix .. 'job:' .. id
    local raw = redis.call('GET', key)
    if raw and raw:sub(1, 1) == code then
      redis.call('DEL', key, prefix .. 'gres:' .. id)
      redis.call('HDEL', prefix .. 'groups', id)
      deleted = deleted + 1
    end
  end
end
return {#ids, deleted}
