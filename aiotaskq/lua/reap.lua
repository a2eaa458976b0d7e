-- reap: active jobs of dead pools -> queued | failed | cancelled
-- KEYS[1] pools zset, KEYS[2] queued zset (bands), KEYS[3] failed zset
-- KEYS[4] cancelled zset, KEYS[5] stats hash, KEYS[6] idle zset
-- ARGV[1] key prefix aiotaskq:{Q}:, ARGV[2] stale timeout ms, ARGV[3] keep ms (of a cancelled
-- job whose task the pools did not register a keep time for: see task_keep)
-- ARGV[4] the calling pool's id (never reaps itself)
-- ARGV[5] grace ms, ARGV[6..] suspects: pools whose presence connection is gone (see
--   presence.lua); each is reaped too when its alive time is more than the grace in the past
-- A pool whose last heartbeat is older than the stale timeout, or a suspect that missed its
-- ticks, is removed and each job it still held is requeued. Jobs still waiting in its inbox never started:
-- they go back uncharged. Otherwise the lost attempt counts: a job out of
-- retries ends failed, one whose cancellation was asked ends cancelled.
-- Removing the pool and moving its jobs happen in one call, so exactly one
-- live pool reaps a dead one. Returns {pools reaped, jobs requeued, jobs failed}.
-- Time: Redis TIME: liveness is the pool's heartbeat, never a job's age.
local prefix, stale_ms, keep_ms = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(now - stale_ms), 'LIMIT', 0, 20)
local alive_key, presence_key = prefix .. 'alive', prefix .. 'presence'
local grace_ms = tonumber(ARGV[5] or '') or 0
for i = 6, #ARGV do
  local alive = redis.call('ZSCORE', alive_key, ARGV[i])
  if alive and tonumber(alive) < now - grace_ms and redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    local seen = false
    for _, p in ipairs(dead) do
      seen = seen or p == ARGV[i]
    end
    if not seen then
      dead[#dead + 1] = ARGV[i]
    end
  end
end
local requeued, failed = 0, 0
local reaped = 0

local function requeue_job(pool_id, id, unstarted)
  local a = cache_get(actives, prefix, id)
  local pool, attempt, cancel, _
  if a then
    pool, attempt, _, cancel = active_fields(a)
  end
  local raw = cache_get(jobs, prefix, id)
  if not raw or pool ~= pool_id then
    return
  end
  local r = parse(raw)
  cancel = cancel == '1'
  if cancel then
    later_count(KEYS[5], 'cancelled')
    close_job(prefix, id, raw, a, 'cancelled', now, task_keep(prefix, r and r.task, keep_ms))
    return
  end
  local retries = r and max_retries(prefix, r) or '0'
  if not unstarted and (tonumber(attempt) or 0) > (tonumber(retries) or 0) then
    later_count(KEYS[5], 'failed')
    close_job(prefix, id, raw, a, 'failed', now, -1, '', 'WorkerLost: the pool running this job (' .. pool_id ..
      ') stopped sending heartbeats; attempt ' .. attempt .. ' was lost and no retries are left', '')
    failed = failed + 1
    return
  end
  cache_del(actives, prefix, id)
  release_key(prefix, id, raw)
  if not unstarted and r then  -- the lost attempt counts
    r[R_ATTEMPTS] = attempt
    cache_put(jobs, prefix, id, build(r))
  end
  push_queued(prefix, record_prio(raw), id)
  requeued = requeued + 1
end

for _, pool_id in ipairs(dead) do
  if pool_id ~= ARGV[4] then
    reaped = reaped + 1
    redis.call('ZREM', KEYS[1], pool_id)
    redis.call('ZREM', KEYS[6], pool_id)
    redis.call('ZREM', alive_key, pool_id)
    redis.call('HDEL', presence_key, pool_id)
    redis.call('DEL', prefix .. 'pool:' .. pool_id .. ':info')
    local unstarted = {}
    for _, rec in ipairs(redis.call('LRANGE', inbox_key(prefix, pool_id), 0, -1)) do
      if rec ~= '' then
        unstarted[record_id(rec)] = true
      end
    end
    local set_key = pool_key(prefix, pool_id)
    local ids = redis.call('SMEMBERS', set_key)
    prefetch(jobs, prefix, ids)
    prefetch(actives, prefix, ids)
    for _, id in ipairs(ids) do
      requeue_job(pool_id, id, unstarted[id])
    end
    redis.call('DEL', set_key, inbox_key(prefix, pool_id))
  end
end
if requeued > 0 then
  redis.call('HINCRBY', KEYS[5], 'requeued', requeued)
  wake(KEYS[6], prefix)
end
flush()
return {reaped, requeued, failed}
