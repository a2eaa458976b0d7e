-- Shared helpers, prepended to every script by aiotaskq/_scripts.py.
-- Time: scripts read the Redis server clock (TIME) so that pools with skewed
-- clocks agree on due times, heartbeats and staleness.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as decimal strings: Lua numbers are doubles, and the default number
-- formatting may switch to exponent notation.
local function int(x)
  return string.format('%.0f', x)
end

-- Waiting jobs: one list per priority band, aiotaskq:{Q}:queued:<prio>, in FIFO order;
-- the zset `queued` holds the bands that have jobs, scored -prio (highest first).
-- (A list entry costs ~18 bytes of Redis memory where a zset entry cost ~120.)
local function band_key(prefix, prio)
  return prefix .. 'queued:' .. prio
end

-- Add a waiting job at the back of its band, or at the front (a job given back).
local function push_queued(prefix, prio, id, front)
  prio = tostring(tonumber(prio) or 0)
  local n
  if front then
    n = redis.call('LPUSH', band_key(prefix, prio), id)
  else
    n = redis.call('RPUSH', band_key(prefix, prio), id)
  end
  if n == 1 then
    redis.call('ZADD', prefix .. 'queued', -tonumber(prio), prio)
  end
end

-- Take a waiting job out of its band (cancel, reschedule): a scan of that band.
local function remove_queued(prefix, prio, id)
  prio = tostring(tonumber(prio) or 0)
  local key = band_key(prefix, prio)
  redis.call('LREM', key, 1, id)
  if redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', prefix .. 'queued', prio)
  end
end

-- Pop up to n waiting ids: highest band first, FIFO within a band.
local function pop_queued(prefix, n)
  local ids = {}
  if n <= 0 then
    return ids
  end
  for _, prio in ipairs(redis.call('ZRANGE', prefix .. 'queued', 0, -1)) do
    local key, want = band_key(prefix, prio), n - #ids
    local got = redis.call('LPOP', key, want) or {}
    for _, id in ipairs(got) do
      ids[#ids + 1] = id
    end
    if #got < want or redis.call('EXISTS', key) == 0 then
      redis.call('ZREM', prefix .. 'queued', prio)
    end
    if #ids >= n then
      break
    end
  end
  return ids
end

-- Keys of one pool, built from the queue's prefix (they share its hash tag).
local function pool_key(prefix, pool_id)
  return prefix .. 'pool:' .. pool_id
end
local function inbox_key(prefix, pool_id)
  return prefix .. 'inbox:' .. pool_id
end

-- Wake every idle pool (see claim.lua) once: an empty entry in its inbox makes it
-- claim again. The pools leave the idle zset; their next claim puts them back.
local function wake(idle_key, prefix)
  local pools = redis.call('ZRANGE', idle_key, 0, -1)
  if #pools > 0 then
    for _, p in ipairs(pools) do
      redis.call('RPUSH', inbox_key(prefix, p), '')
    end
    redis.call('DEL', idle_key)
  end
end

-- Bookkeeping that the transitions of one call share, done once by flush() at its end:
-- one SREM per pool set, one ZADD per ended zset, one HINCRBY per counter, one trim per
-- ended zset, one wake-up.
-- (Per job, it cost settle.lua more Redis time than the rest of a job's outcome.)
-- Every script that runs finish_job, fail_job, give_back_job or close_job calls flush().
local later = {srem = {}, zadd = {}, incr = {}, trim = {}, wake = nil}

-- The table under key in t, created when missing.
local function bucket(t, key)
  local b = t[key]
  if not b then
    b = {}
    t[key] = b
  end
  return b
end

local function later_srem(set, id)
  local ids = bucket(later.srem, set)
  ids[#ids + 1] = id
end

local function later_count(stats, field)
  local counts = bucket(later.incr, stats)
  counts[field] = (counts[field] or 0) + 1
end

local function later_zadd(zset, score, id)
  local entries = bucket(later.zadd, zset)
  entries[#entries + 1] = score
  entries[#entries + 1] = id
end

-- Ended zsets keep ids until the longest keep time of the jobs ended in this call.
local function later_trim(zset, cutoff)
  local old = later.trim[zset]
  if not old or cutoff < old then
    later.trim[zset] = cutoff
  end
end

local function flush()
  for set, ids in pairs(later.srem) do
    for i = 1, #ids, 1000 do
      redis.call('SREM', set, unpack(ids, i, math.min(i + 999, #ids)))
    end
  end
  for zset, entries in pairs(later.zadd) do
    for i = 1, #entries, 1000 do
      redis.call('ZADD', zset, unpack(entries, i, math.min(i + 999, #entries)))
    end
  end
  for stats, counts in pairs(later.incr) do
    for field, n in pairs(counts) do
      redis.call('HINCRBY', stats, field, n)
    end
  end
  for zset, cutoff in pairs(later.trim) do
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', '(' .. int(cutoff))
  end
  if later.wake then
    wake(later.wake[1], later.wake[2])
  end
  later = {srem = {}, zadd = {}, incr = {}, trim = {}, wake = nil}
end

-- A claimed job as one string, for a pool's inbox: each field as <length>:<bytes>
-- (id, task, payload, attempt, max retries, timeout, enqueue time ms).
local function record(fields)
  local parts = {}
  for i, v in ipairs(fields) do
    parts[i] = #v .. ':' .. v
  end
  return table.concat(parts)
end

-- The id at the head of a record.
local function record_id(rec)
  local len = rec:match('^(%d+):')
  return rec:sub(#len + 2, #len + 1 + tonumber(len))
end

-- The fields that make a job active under pool_id at its attempt number, and its max
-- retries: a job enqueued without them takes the default pools registered in the
-- tasks hash (a producer may enqueue by name a task it does not know).
local task_retries = {}  -- this call's lookups in the tasks hash
local function active_fields(prefix, pool_id, now, task, retries, attempts)
  local fields = {'status', 'active', 'pool', pool_id, 'start_at', int(now), 'attempts', attempts}
  if not retries or retries == '' then
    retries = task_retries[task]
    if not retries then
      retries = redis.call('HGET', prefix .. 'tasks', task) or '0'
      task_retries[task] = retries
    end
    fields[#fields + 1] = 'retries'
    fields[#fields + 1] = retries
  end
  return fields, retries
end

-- queued -> active under pool_id (claim.lua; the caller adds the id to the pool's set).
-- f holds the job's task, payload, retries, timeout, attempts and enqueue time. Returns the
-- claimed job's fields, as an inbox record holds them.
local function activate(prefix, job_key, id, pool_id, now, f)
  local attempts = tostring((tonumber(f[5]) or 0) + 1)
  local fields, retries = active_fields(prefix, pool_id, now, f[1], f[3], attempts)
  redis.call('HSET', job_key, unpack(fields))
  return {id, f[1], f[2], attempts, retries, f[4] or '', f[6] or ''}
end

-- Liveness by the freshest evidence: the `alive` zset holds, per pool, the time (ms) until
-- which it counts as alive: its last presence tick, heartbeat or claim plus one and a half
-- tick intervals (see _runner.py). A pool past that time is given no new job.
local give_back_inbox  -- defined below give_back_job

-- The live idle pool with the most free slots, taking one of them; nil when none is idle.
-- An idle pool past its alive time leaves `idle` and gives its inbox back at once.
local function take_idle_slot(prefix, now)
  local idle_key = prefix .. 'idle'
  for _ = 1, 10 do
    local top = redis.call('ZREVRANGE', idle_key, 0, 0, 'WITHSCORES')
    if not top[1] then
      return nil
    end
    local alive = tonumber(redis.call('ZSCORE', prefix .. 'alive', top[1]) or '0')
    if alive >= now then
      if tonumber(top[2]) <= 1 then
        redis.call('ZREM', idle_key, top[1])
      else
        redis.call('ZINCRBY', idle_key, -1, top[1])
      end
      return top[1]
    end
    redis.call('ZREM', idle_key, top[1])
    give_back_inbox(prefix, top[1])
  end
  return nil
end

-- Move a job to an end state: recorded in its zset, expired after keep_ms
-- (0 keeps nothing, negative keeps it forever), waiters told on its done channel.
-- fields: more field/value pairs to write with the status (or nil). The zset trim is
-- deferred. The message is the status; for a job not kept, its outcome itself, which
-- nothing could read again: <status>\n<length of the task name>\n<task name><result>.
local function close_job(job_key, id, status, zset, now, keep_ms, channel, fields)
  keep_ms = tonumber(keep_ms)
  if keep_ms == 0 then
    local task, result = redis.call('HGET', job_key, 'task') or '', ''
    for i = 1, #(fields or {}) - 1, 2 do
      if fields[i] == 'result' then
        result = fields[i + 1]
      end
    end
    redis.call('DEL', job_key)
    redis.call('PUBLISH', channel, status .. '\n' .. #task .. '\n' .. task .. result)
    return
  end
  local f = {'status', status, 'end_at', int(now)}
  for _, v in ipairs(fields or {}) do
    f[#f + 1] = v
  end
  redis.call('HSET', job_key, unpack(f))
  later_zadd(zset, int(now), id)
  if keep_ms > 0 then
    redis.call('PEXPIRE', job_key, int(keep_ms))
    later_trim(zset, now - keep_ms)
  else
    redis.call('PERSIST', job_key)
  end
  redis.call('PUBLISH', channel, status)
end

-- The keep ms of a job of `task` that ends cancelled outside its pool (cancel.lua,
-- reap.lua): the value the caller knows for that task (pairs of task name and keep ms
-- in known, from index i), else the one pools registered in the keep hash (written
-- with the tasks hash), else fallback.
local function task_keep(prefix, task, fallback, known, i)
  task = task or ''
  for j = i or 1, #(known or {}) - 1, 2 do
    if known[j] == task then
      return known[j + 1]
    end
  end
  return redis.call('HGET', prefix .. 'keep', task) or fallback
end

-- Store a new job, queued or scheduled: the body of enqueue.lua, shared with tick.lua.
-- Every key is built from the queue's prefix. prio, retries, timeout, delay_ms, at_ms as in
-- an option group of enqueue.lua's ARGV. Returns 1 when written, 0 when a job with this id is
-- scheduled, queued or active. The caller runs flush() (the enqueued counter, wake-ups).
-- A job due now goes straight to an idle pool when there is one (the hand-off: active
-- under that pool, its record pushed to the pool's inbox, on which the pool blocks),
-- so it starts one round trip after it was sent; otherwise it waits in `queued`.
local function enqueue_job(prefix, now, id, task, payload, prio, retries, timeout, delay_ms, at_ms)
  local job_key = prefix .. 'job:' .. id
  local status = redis.call('HGET', job_key, 'status')
  if status == 'scheduled' or status == 'queued' or status == 'active' then
    return 0
  end
  if status then  -- an ended job with this id is replaced
    redis.call('DEL', job_key)
    redis.call('ZREM', prefix .. status, id)
  end

  local due = now
  if at_ms ~= '' then
    due = tonumber(at_ms)
  elseif delay_ms ~= '' then
    due = now + tonumber(delay_ms)
  end

  local pool_id
  if due > now then
    status = 'scheduled'
    redis.call('ZADD', prefix .. 'scheduled', int(due), id)
    later.wake = {prefix .. 'idle', prefix}  -- idle pools plan their next claim from the earliest due time
  else
    status = 'queued'
    if not later.no_idle then
      pool_id = take_idle_slot(prefix, now)
      later.no_idle = not pool_id  -- no pool goes idle while this script runs
    end
    if not pool_id then
      push_queued(prefix, prio, id)
    end
  end
  -- Fields that hold their default are left out (memory per waiting job): prio 0,
  -- attempts 0, no timeout, retries not known yet, due_at equal to enq_at.
  local fields = {'task', task, 'payload', payload, 'status', status, 'enq_at', int(now)}
  if tonumber(prio) ~= 0 then
    fields[#fields + 1] = 'prio'
    fields[#fields + 1] = prio
  end
  if retries ~= '' then
    fields[#fields + 1] = 'retries'
    fields[#fields + 1] = retries
  end
  if timeout ~= '' then
    fields[#fields + 1] = 'timeout'
    fields[#fields + 1] = timeout
  end
  if due ~= now then
    fields[#fields + 1] = 'due_at'
    fields[#fields + 1] = int(due)
  end
  if pool_id then  -- the hand-off: active under that pool from the start, at attempt 1
    local extra
    extra, retries = active_fields(prefix, pool_id, now, task, retries, '1')
    for _, v in ipairs(extra) do
      fields[#fields + 1] = v
    end
  end
  redis.call('HSET', job_key, unpack(fields))
  later_count(prefix .. 'stats', 'enqueued')
  if pool_id then
    redis.call('SADD', pool_key(prefix, pool_id), id)
    redis.call('RPUSH', inbox_key(prefix, pool_id), record({id, task, payload, '1', retries, timeout, int(now)}))
  end
  return 1
end

-- Fencing: the fields asked for when this pool still owns this attempt, else nil.
local function owned(job_key, pool_id, attempt, ...)
  local f = redis.call('HMGET', job_key, 'status', 'pool', 'attempts', ...)
  if f[1] ~= 'active' or f[2] ~= pool_id or f[3] ~= attempt then
    return nil
  end
  return f
end

-- active -> succeeded | cancelled (finish.lua, settle.lua). Returns 1, or -1 when fenced out.
local function finish_job(job_key, pool_set, zset, stats, id, pool_id, attempt, status, result, keep_ms,
                          channel, now)
  local f = owned(job_key, pool_id, attempt, 'start_at')
  if not f then
    return -1
  end
  later_srem(pool_set, id)
  later_count(stats, status)
  close_job(job_key, id, status, zset, now, keep_ms, channel,
    {'result', result, 'duration', int(now - (tonumber(f[4]) or now))})
  return 1
end

-- active -> scheduled (retry after delay_ms) | failed (fail.lua, settle.lua).
-- A negative delay_ms means "do not retry". Returns 2 retried, 3 failed, -1 fenced out.
local function fail_job(job_key, pool_set, scheduled, failed, stats, idle, id, pool_id, attempt, err, tb,
                        delay_ms, done_channel, prefix, now)
  local f = owned(job_key, pool_id, attempt, 'retries', 'start_at')
  if not f then
    return -1
  end
  local delay = tonumber(delay_ms)
  local fields = {'error', err, 'tb', tb, 'duration', int(now - (tonumber(f[5]) or now))}
  later_srem(pool_set, id)
  if delay >= 0 and tonumber(f[3]) <= (tonumber(f[4]) or 0) then
    local due = now + delay
    redis.call('HSET', job_key, 'status', 'scheduled', 'due_at', int(due), unpack(fields))
    redis.call('ZADD', scheduled, int(due), id)
    later_count(stats, 'retried')
    later.wake = {idle, prefix}
    return 2
  end
  later_count(stats, 'failed')
  close_job(job_key, id, 'failed', failed, now, -1, done_channel, fields)
  return 3
end

-- active -> queued, uncharged, at the front of its priority band (requeue.lua, settle.lua,
-- reconcile.lua). Returns 1, or -1 when fenced out.
local function give_back_job(job_key, pool_set, idle, id, pool_id, attempt, prefix)
  local f = owned(job_key, pool_id, attempt, 'prio')
  if not f then
    return -1
  end
  later_srem(pool_set, id)
  redis.call('HSET', job_key, 'status', 'queued', 'attempts', int(tonumber(f[3]) - 1))
  push_queued(prefix, f[4], id, true)
  later.wake = {idle, prefix}
  return 1
end

-- Give back, uncharged, the jobs waiting in a pool's inbox (handed over, never started),
-- and empty it (a pool found dead, see take_idle_slot). Returns how many went back.
give_back_inbox = function(prefix, pool_id)
  local inbox, pool_set = inbox_key(prefix, pool_id), pool_key(prefix, pool_id)
  local n = 0
  for _, rec in ipairs(redis.call('LRANGE', inbox, 0, -1)) do
    if rec ~= '' then
      local id = record_id(rec)
      local job_key = prefix .. 'job:' .. id
      local attempt = redis.call('HGET', job_key, 'attempts') or ''
      if give_back_job(job_key, pool_set, prefix .. 'idle', id, pool_id, attempt, prefix) == 1 then
        n = n + 1
      end
    end
  end
  redis.call('DEL', inbox)
  return n
end
