-- cancel: scheduled | queued -> cancelled; active -> (abort asked of its pool)
-- KEYS[1] job:<id> (the ended record), KEYS[2] scheduled zset, KEYS[3] queued zset (bands)
-- KEYS[4] cancelled zset, KEYS[5] stats hash
-- ARGV[1] id, ARGV[2] keep ms when nothing better is known (the caller's queue's keep_result)
-- ARGV[3] done channel, ARGV[4] abort channel
-- ARGV[5] key prefix aiotaskq:{Q}: (the jobs hash, the job's band list, the keep hash)
-- ARGV[6..] pairs of task name and keep ms: the tasks the caller knows
-- A job cancelled here is kept for its task's keep time: the caller's value for the
-- job's task, else the one pools registered (see task_keep), else ARGV[2].
-- Returns 1 when cancelled, 2 when the running attempt was asked to stop
-- (the owner pool cancels it and records `cancelled`; if that pool dies
-- first, the stale-pool reaper records it), 0 when the job is missing or
-- already finished. Time: Redis TIME.
local id, prefix = ARGV[1], ARGV[5]
local raw = cache_get(jobs, prefix, id)
if not raw then
  return 0
end
local a = cache_get(actives, prefix, id)
if a then
  local pool, attempt, start, _, progress, note = active_fields(a)
  if pool then
    cache_put(actives, prefix, id, pool .. '|' .. attempt .. '|' .. start .. '|1|' .. progress .. '|' .. note)
    flush()
  end
  publish(ARGV[4], id)
  return 2
end
local r = parse(raw)
if raw:sub(1, 1) == 's' then
  redis.call('ZREM', KEYS[2], id)
else
  remove_queued(prefix, r and r[R_PRIO] or '', id, r and r.task, r and r.key)
end
redis.call('ZREM', prefix .. 'expires', id)  -- an expiry to watch no more (options(expires=...))
later_count(KEYS[5], 'cancelled')
local keep = task_keep(prefix, r and r.task, ARGV[2], ARGV, 6)
close_job(prefix, id, raw, '', 'cancelled', now_ms(), keep)
flush()
return 1
