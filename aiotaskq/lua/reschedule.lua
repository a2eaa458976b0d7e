-- reschedule: scheduled | queued | failed | cancelled -> scheduled
-- KEYS[1] job:<id> (the ended record), KEYS[2] scheduled zset, KEYS[3] queued zset (bands)
-- KEYS[4] failed zset, KEYS[5] cancelled zset, KEYS[6] idle zset
-- ARGV[1] id, ARGV[2] delay ms ('' = none), ARGV[3] due time epoch ms ('' = none)
-- ARGV[4] key prefix aiotaskq:{Q}: (the jobs hash, the job's band list; wakes idle pools)
-- Returns 1 when rescheduled, 0 when the job is missing, active or succeeded.
-- A failed or cancelled job starts over: attempts and the last error are reset.
-- A job waiting for its parents (options(after=...)) keeps waiting: only its due time changes.
-- Time: Redis TIME for a delay.
local id, prefix = ARGV[1], ARGV[4]
redis.call('ZREM', prefix .. 'expires', id)  -- a job moved to a new time keeps no expiry (options(expires=...))
local raw = cache_get(jobs, prefix, id)
local status
if raw then
  if cache_get(actives, prefix, id) then
    return 0
  end
  status = STATUS[raw:sub(1, 1)]
else
  local ended = redis.call('GET', KEYS[1])
  if not ended then
    return 0
  end
  local st, _, _, _, _, _, _, rec = ended_parts(ended)
  status, raw = STATUS[st or ''], rec
  if status ~= 'failed' and status ~= 'cancelled' then
    return 0
  end
end
local r = parse(raw)
if not r then
  return 0
end
local now = now_ms()
local due = now
if ARGV[3] ~= '' then
  due = tonumber(ARGV[3])
elseif ARGV[2] ~= '' then
  due = now + tonumber(ARGV[2])
end
if status == 'scheduled' and redis.call('HGET', prefix .. 'deps', id) then
  r[R_DUE] = int(due)
  cache_put(jobs, prefix, id, build(r))
  flush()
  return 1
end
if status == 'queued' then
  remove_queued(prefix, r[R_PRIO], id, r.task, r.key)
else
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
end
if status == 'failed' or status == 'cancelled' then  -- it starts over
  redis.call('DEL', KEYS[1])
  r[R_ATTEMPTS], r.err, r.tb = '', '', ''
end
r[R_STATUS], r[R_DUE] = 's', int(due)
cache_put(jobs, prefix, id, build(r))
redis.call('ZADD', KEYS[2], int(due), id)
flush()
wake(KEYS[6], prefix)
return 1
