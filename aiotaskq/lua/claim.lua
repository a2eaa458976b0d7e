-- claim: scheduled -> queued (due ones), then queued -> active (a batch)
-- KEYS[1] scheduled zset, KEYS[2] queued zset (bands; the band lists queued:<prio> are
--         built from the prefix), KEYS[3] pools zset (pool id -> heartbeat ms)
-- KEYS[4] pool set        aiotaskq:{Q}:pool:<pool id>, the ids this pool holds
-- KEYS[5] idle zset (pool id -> free slots registered)
-- KEYS[6] inbox list      aiotaskq:{Q}:inbox:<pool id>, jobs handed to this pool
-- ARGV[1] pool id, ARGV[2] max jobs to take, ARGV[3] key prefix aiotaskq:{Q}:
-- ARGV[4] '1': register (or unregister) the pool in `idle` by what it got; '0': leave `idle` alone
-- ARGV[5] ms the pool counts as alive from now ('' = leave its alive time alone): a claim is
--         evidence of life (see `alive` in _lib.lua)
-- ARGV[6] keep ms of a job that expired before it started (its task's, when pools registered
--         one, else this: see task_keep and pop_unexpired in _lib.lua)
-- Returns {code, next_due_in_ms, handed, inbox record..., id, attempt, job record, ...}:
--   code -1: this pool is not registered (declared dead): register afresh first.
--   next_due_in_ms: ms until the earliest scheduled job (-1 when none).
--   handed: how many records follow: jobs handed to this pool (already active under
--   it) that were still in its inbox; the inbox is emptied (wake-up entries dropped).
--   Then three fields per job claimed from `queued`: its id, the attempt it starts, its
--   record (see _lib.lua; aiotaskq/_record.py reads it).
-- Rate limits: see release_held and startable in _lib.lua; the next due time also counts the
-- opening of a limited task's next window, so that pools wake for it and never spin.
-- Keys (key_concurrency): see key_admit in _lib.lua; a full key's jobs wait in its held list.
-- A paused queue (its `paused` key exists, see pause.lua) gives no job from `queued` and no
-- next due time: the pool parks in `idle` until resume wakes it.
-- The handed jobs count towards ARGV[2]. When fewer jobs than that were found, the pool
-- is registered in `idle` with the slots it has left: enqueue hands it new jobs directly.
-- The job's active entry (owner pool, attempt, start time) is written in the same call that
-- pops the job, so a claimed job never looks unclaimed. Time: Redis TIME (due times).
local pool_id, want, prefix, register = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4] ~= '0'
if not redis.call('ZSCORE', KEYS[3], pool_id) then
  return {-1, -1, 0}
end
local now = now_ms()
if (ARGV[5] or '') ~= '' then
  redis.call('ZADD', prefix .. 'alive', int(now + tonumber(ARGV[5])), pool_id)
end

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, 1000)
prefetch(jobs, prefix, due)
for _, id in ipairs(due) do
  local raw = cache_get(jobs, prefix, id)
  if raw and raw:sub(1, 1) == 's' then  -- the status is the record's first byte
    cache_put(jobs, prefix, id, 'q' .. raw:sub(2))
    push_queued(prefix, record_prio(raw), id)
  end
end
for i = 1, #due, 1000 do
  redis.call('ZREM', KEYS[1], unpack(due, i, math.min(i + 999, #due)))
end

local paused = has(prefix, 'paused')  -- pause.lua: take nothing from `queued`
local out = {0, -1, 0}
local got = 0
for _, rec in ipairs(redis.call('LRANGE', KEYS[6], 0, -1)) do
  if rec ~= '' then
    out[#out + 1] = rec
    got = got + 1
  end
end
out[3] = got
redis.call('DEL', KEYS[6])

if want > got and not paused then
  local ids = {}
  -- Held jobs whose gate opened (a rate-limited task's window has starts left, a key has free
  -- slots) go first, those of a priority at least the bands' highest; then the queue, where a
  -- job that finds its key full or its window spent moves to its held list and another is
  -- popped in its place (1000 moved per call at most: see startable in _lib.lua); then, with
  -- slots left, the other held jobs.
  local top = has(prefix, 'held') and top_priority(prefix) or nil
  local popped = release_held(prefix, want - got, now, top)
  local rest, moved = want - got - #popped, 0
  while rest > 0 and moved < 1000 do
    -- The key first: a job whose key is full waits in its gate without taking a start, and
    -- takes one from the window it starts in (see gate_grant in _lib.lua).
    local ok, waiting = key_admit(prefix, pop_unexpired(prefix, rest, now, ARGV[6] or '86400000'))
    local held
    ok, held = startable(prefix, ok, now)
    held = held + waiting
    for _, id in ipairs(ok) do
      popped[#popped + 1] = id
    end
    rest, moved = rest - #ok, moved + held
    if held == 0 then  -- all it asked for, or the queue ran dry
      break
    end
  end
  if rest > 0 and top then
    for _, id in ipairs(release_held(prefix, rest, now)) do
      popped[#popped + 1] = id
    end
  end
  prefetch(jobs, prefix, popped)
  local now_s = int(now)
  for _, id in ipairs(popped) do
    local raw = cache_get(jobs, prefix, id)
    if raw then
      out[#out + 1] = id
      out[#out + 1] = activate(prefix, id, raw, pool_id, now_s)
      out[#out + 1] = raw
      ids[#ids + 1] = id
    end
  end
  for i = 1, #ids, 1000 do
    redis.call('SADD', KEYS[4], unpack(ids, i, math.min(i + 999, #ids)))
  end
  got = got + #ids
end
flush()
if register then
  if got < want then
    redis.call('ZADD', KEYS[5], want - got, pool_id)
  else
    redis.call('ZREM', KEYS[5], pool_id)
  end
end

local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] and first[2] ~= 'inf' and not paused then  -- (inf: only jobs waiting for parents)  -- paused: no alarm for a due time; resume wakes the pool
  out[2] = math.max(0, tonumber(first[2]) - now)
end
local held = has(prefix, 'held') and redis.call('ZRANGE', prefix .. 'held', 0, 0, 'WITHSCORES') or {}
if held[2] and held[2] ~= 'inf' and not paused and (out[2] < 0 or tonumber(held[2]) - now < out[2]) then
  out[2] = math.max(0, tonumber(held[2]) - now)
end
return out
