-- Shared helpers, prepended to every script by aiotaskq/_scripts.py.
-- Time: scripts read the Redis server clock (TIME) so that pools with skewed
-- clocks agree on due times, heartbeats and staleness.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as decimal strings: Lua numbers are doubles, and the default number
-- formatting may switch to exponent notation.
-- (The last value is remembered: a call formats the same `now` many times, and number
-- formatting is one of the dearest things a script does.)
local int_k, int_v
local function int(x)
  if x ~= int_k then
    int_k, int_v = x, string.format('%.0f', x)
  end
  return int_v
end

-- Small non-negative integers (lengths, attempts, durations) as strings, remembered.
local small = {}
local function n2s(n)
  local s = small[n]
  if not s then
    s = tostring(n)
    if n < 100000 then
      small[n] = s
    end
  end
  return s
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

-- Where a job is. While it is scheduled, queued or active, its record is a field of the
-- `jobs` hash (id -> record); while it is active, the `active` hash holds its attempt too
-- (id -> active entry). Once it ended, the string job:<id> holds its ended record (with its
-- expiry), and the hashes nothing. Scripts change both hashes through the write-back cache
-- below, so a call reads each job once (one HMGET per hash) and writes all it changed with
-- one HSET and one HDEL per hash: a command on a field of a shared hash costs Redis a
-- fraction of a command on a key of its own. The hot transitions (enqueue, claim, settle)
-- only concatenate strings; aiotaskq/_record.py reads the same formats.
--
-- Record (jobs hash): 9 header fields, each followed by '|': status (s scheduled,
-- q queued), priority ('' = 0), max retries ('' = the task's default), timeout s ('' none),
-- attempts charged so far ('' = 0), enqueued at ms, due at ms ('' = enqueued), byte lengths
-- of the task name and of the payload; then task name, payload; then, when the last attempt
-- failed and the job waits for its retry, <bytes of error>|<error><traceback>.
-- Active entry (active hash): <pool id>|<attempt>|<started at ms>|<cancel '1' or ''>|
-- <progress>|<progress note>.
-- Ended record (job:<id>): status (S succeeded, F failed, C cancelled), ended at ms,
-- duration ms, then the byte lengths of the active entry, result, error and traceback,
-- each followed by '|'; then those four, then the job's record as it was.
local RECORD = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|()'
local ATTEMPTS = '^[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)|'
local ACTIVE = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|()'
local ENDED = '^(.)|([^|]*)|([^|]*)|(%d*)|(%d*)|(%d*)|(%d*)|()'
local STATUS = {s = 'scheduled', q = 'queued', S = 'succeeded', F = 'failed', C = 'cancelled'}
local CODE = {scheduled = 's', queued = 'q', succeeded = 'S', failed = 'F', cancelled = 'C'}
local R_STATUS, R_PRIO, R_RETRIES, R_TIMEOUT, R_ATTEMPTS, R_ENQ, R_DUE = 1, 2, 3, 4, 5, 6, 7

local function new_record(status, task, payload, prio, retries, timeout, enq_at, due_at)
  return status .. '|' .. prio .. '|' .. retries .. '|' .. timeout .. '||' .. enq_at .. '|' .. due_at .. '|' ..
    n2s(#task) .. '|' .. n2s(#payload) .. '|' .. task .. payload
end

-- A record as a table: header fields 1..7, and task, payload, err, tb; nil when raw is not
-- one (a value edited by hand: the job is treated as missing).
local function parse(raw)
  if not raw then
    return nil
  end
  local r = {raw:match(RECORD)}
  local pos = r[10]
  if not pos then
    return nil
  end
  local tl, pl = tonumber(r[8]) or 0, tonumber(r[9]) or 0
  r.task = raw:sub(pos, pos + tl - 1)
  r.payload = raw:sub(pos + tl, pos + tl + pl - 1)
  local rest = raw:sub(pos + tl + pl)
  r.err, r.tb = '', ''
  local le, at = rest:match('^(%d+)|()')
  if le then
    r.err, r.tb = rest:sub(at, at + tonumber(le) - 1), rest:sub(at + tonumber(le))
  end
  r[8], r[9], r[10] = nil, nil, nil
  return r
end

-- The priority of a record, read without parsing it ('' = 0).
local function record_prio(raw)
  return raw:match('^[^|]*|([^|]*)|') or ''
end

-- The most retries of a parsed record: its own, else the default pools registered for its task.
local function max_retries(prefix, r)
  local retries = r[R_RETRIES]
  if retries == '' then
    retries = redis.call('HGET', prefix .. 'tasks', r.task) or '0'
  end
  return retries
end

local function build(r)
  local s = table.concat(r, '|', 1, 7) .. '|' .. n2s(#r.task) .. '|' .. n2s(#r.payload) .. '|' .. r.task .. r.payload
  if r.err ~= '' or r.tb ~= '' then
    s = s .. n2s(#r.err) .. '|' .. r.err .. r.tb
  end
  return s
end

-- The active entry's fields: pool id, attempt, start ms, cancel, progress, note.
local function active_fields(v)
  local pool, attempt, start, cancel, progress, pos = v:match(ACTIVE)
  if not pos then
    return nil
  end
  return pool, attempt, start, cancel, progress, v:sub(pos)
end

-- An ended record's parts: status code, end ms, duration, active entry, result, error,
-- traceback, record.
local function ended_parts(raw)
  local st, end_at, dur, la, lr, le, lt, pos = raw:match(ENDED)
  if not pos then
    return nil
  end
  la, lr, le, lt = tonumber(la) or 0, tonumber(lr) or 0, tonumber(le) or 0, tonumber(lt) or 0
  local a = pos + la
  return st, end_at, dur, raw:sub(pos, a - 1), raw:sub(a, a + lr - 1), raw:sub(a + lr, a + lr + le - 1),
    raw:sub(a + lr + le, a + lr + le + lt - 1), raw:sub(a + lr + le + lt)
end

-- The write-back caches of the `jobs` and `active` hashes for this call: id -> value, or
-- false (absent). flush() writes what changed.
local function new_cache(name)
  return {name = name, key = nil, vals = {}, dirty = {}}
end
local jobs, actives = new_cache('jobs'), new_cache('active')

local function cache_open(c, prefix)
  if not c.key then
    c.key = prefix .. c.name
  end
end

-- Read the values of ids not read yet, in one HMGET.
local function prefetch(c, prefix, ids)
  cache_open(c, prefix)
  local todo = {}
  for _, id in ipairs(ids) do
    if c.vals[id] == nil then
      todo[#todo + 1] = id
    end
  end
  for i = 1, #todo, 1000 do
    local chunk = {unpack(todo, i, math.min(i + 999, #todo))}
    for j, v in ipairs(redis.call('HMGET', c.key, unpack(chunk))) do
      c.vals[chunk[j]] = v or false
    end
  end
end

local function cache_get(c, prefix, id)
  local v = c.vals[id]
  if v == nil then
    cache_open(c, prefix)
    v = redis.call('HGET', c.key, id) or false
    c.vals[id] = v
  end
  return v or nil
end

local function cache_put(c, prefix, id, v)
  cache_open(c, prefix)
  c.vals[id] = v
  c.dirty[id] = true
end

local function cache_del(c, prefix, id)
  cache_open(c, prefix)
  c.vals[id] = false
  c.dirty[id] = true
end

local function cache_flush(c)
  local set, del = {}, {}
  for id in pairs(c.dirty) do
    local v = c.vals[id]
    if v then
      set[#set + 1] = id
      set[#set + 1] = v
    else
      del[#del + 1] = id
    end
  end
  for i = 1, #set, 1000 do
    redis.call('HSET', c.key, unpack(set, i, math.min(i + 999, #set)))
  end
  for i = 1, #del, 1000 do
    redis.call('HDEL', c.key, unpack(del, i, math.min(i + 999, #del)))
  end
  c.vals, c.dirty = {}, {}
end

-- Bookkeeping that the transitions of one call share, done once by flush() at its end:
-- the `jobs` hash writes, one SREM per pool set, one ZADD per zset, one HINCRBY per
-- counter, one trim per ended zset, one wake-up.
-- (Per job, it cost settle.lua more Redis time than the rest of a job's outcome.)
-- Every script that changes a job calls flush().
local later = {srem = {}, zadd = {}, incr = {}, trim = {}, wake = nil, publish = {}}

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

-- The end messages of this call (done:<id> channel, message pairs), published only where a
-- result() waits: one PUBSUB NUMSUB for the batch costs Redis less than a PUBLISH per job.
local function publish_ends(msgs)
  for i = 1, #msgs, 1000 do
    local channels = {}
    for j = i, math.min(i + 999, #msgs), 2 do
      channels[#channels + 1] = msgs[j]
    end
    local counts = redis.call('PUBSUB', 'NUMSUB', unpack(channels))
    for k = 2, #counts, 2 do
      if counts[k] > 0 then
        redis.call('PUBLISH', counts[k - 1], msgs[i + k - 1])
      end
    end
  end
end

local function flush()
  cache_flush(jobs)
  cache_flush(actives)
  publish_ends(later.publish)
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
  later = {srem = {}, zadd = {}, incr = {}, trim = {}, wake = nil, publish = {}}
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

-- Make a queued job active under pool_id at its next attempt (claim.lua, and the hand-off
-- in enqueue_job; the caller adds the id to the pool's set). Returns the attempt number.
local function activate(prefix, id, raw, pool_id, now_s)
  local attempt = n2s((tonumber(raw:match(ATTEMPTS)) or 0) + 1)
  cache_put(actives, prefix, id, pool_id .. '|' .. attempt .. '|' .. now_s .. '|||')
  return attempt
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

-- End a job as status: out of the jobs and active hashes, its ended record (raw: its record;
-- active: its active entry, '' when it never started) written to job:<id>, expired after
-- keep_ms (0 keeps nothing, negative keeps it forever); its id in the status zset (deferred,
-- with the trim), waiters told on done:<id>. The message is the status; for a job not
-- kept, its outcome itself, which nothing could read again:
-- <status>\n<length of the task name>\n<task name><result>.
local function close_job(prefix, id, raw, active, status, now, keep_ms, result, err, tb)
  keep_ms = tonumber(keep_ms)
  cache_del(jobs, prefix, id)
  cache_del(actives, prefix, id)
  local channel = prefix .. 'done:' .. id
  result, err, tb = result or '', err or '', tb or ''
  local key = prefix .. 'job:' .. id
  if keep_ms == 0 then
    local r = parse(raw)
    local task = r and r.task or ''
    redis.call('DEL', key)
    local msgs = later.publish
    msgs[#msgs + 1] = channel
    msgs[#msgs + 1] = status .. '\n' .. #task .. '\n' .. task .. result
    return
  end
  local start = active ~= '' and active:match('^[^|]*|[^|]*|([^|]*)|') or ''
  local took = start ~= '' and math.max(0, now - (tonumber(start) or now)) or nil
  local ended = CODE[status] .. '|' .. int(now) .. '|' .. (took and n2s(took) or '') .. '|' .. n2s(#active) .. '|'
    .. n2s(#result) .. '|' .. n2s(#err) .. '|' .. n2s(#tb) .. '|' .. active .. result .. err .. tb .. raw
  local zset = prefix .. status
  if keep_ms > 0 then
    redis.call('SET', key, ended, 'PX', int(keep_ms))
    later_trim(zset, now - keep_ms)
  else
    redis.call('SET', key, ended)
  end
  later_zadd(zset, int(now), id)
  local msgs = later.publish
  msgs[#msgs + 1] = channel
  msgs[#msgs + 1] = status
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
-- prio, retries, timeout, delay_ms, at_ms as in an option group of enqueue.lua's ARGV;
-- fresh: the id was generated by the producer, so no ended job can have it. Returns 1 when
-- written, 0 when a job with this id is scheduled, queued or active. The caller runs
-- flush() (the hashes, the enqueued counter, wake-ups). A job due now goes straight to an
-- idle pool when there is one (the hand-off: active under that pool, its record pushed to
-- the pool's inbox, on which the pool blocks), so it starts one round trip after it was
-- sent; otherwise it waits in `queued`.
local function enqueue_job(prefix, now, id, task, payload, prio, retries, timeout, delay_ms, at_ms, fresh)
  if cache_get(jobs, prefix, id) then
    return 0
  end
  if not fresh then  -- an ended job with this id is replaced
    local ended = redis.call('GET', prefix .. 'job:' .. id)
    if ended then
      redis.call('DEL', prefix .. 'job:' .. id)
      local status = STATUS[ended:sub(1, 1)]
      if status then
        redis.call('ZREM', prefix .. status, id)
      end
    end
  end

  local due = now
  if at_ms ~= '' then
    due = tonumber(at_ms)
  elseif delay_ms ~= '' then
    due = now + tonumber(delay_ms)
  end
  if tonumber(prio) == 0 then
    prio = ''
  end
  local now_s = int(now)
  local status = 'q'
  local pool_id
  if due > now then
    status = 's'
    later_zadd(prefix .. 'scheduled', int(due), id)
    later.wake = {prefix .. 'idle', prefix}  -- idle pools plan their next claim from the earliest due time
  else
    if not later.no_idle then
      pool_id = take_idle_slot(prefix, now)
      later.no_idle = not pool_id  -- no pool goes idle while this script runs
    end
    if not pool_id then
      push_queued(prefix, prio, id)
    end
  end
  local raw = new_record(status, task, payload, prio, retries, timeout, now_s, due ~= now and int(due) or '')
  cache_put(jobs, prefix, id, raw)
  if pool_id then  -- the hand-off: active under that pool from the start, at attempt 1
    activate(prefix, id, raw, pool_id, now_s)
    if retries == '' then
      retries = redis.call('HGET', prefix .. 'tasks', task) or ''
    end
    redis.call('SADD', pool_key(prefix, pool_id), id)
    redis.call('RPUSH', inbox_key(prefix, pool_id), record({id, task, payload, '1', retries, timeout, now_s}))
  end
  later_count(prefix .. 'stats', 'enqueued')
  return 1
end

-- Fencing: the job's record and active entry when this pool still runs this attempt, else nil.
local function owned(prefix, id, pool_id, attempt)
  local a = cache_get(actives, prefix, id)
  local tag = pool_id .. '|' .. attempt .. '|'
  if not a or a:sub(1, #tag) ~= tag then
    return nil
  end
  local raw = cache_get(jobs, prefix, id)
  if not raw then
    return nil
  end
  return raw, a
end

-- active -> succeeded | cancelled (finish.lua, settle.lua). Returns 1, or -1 when fenced out.
local function finish_job(prefix, id, pool_id, attempt, status, result, keep_ms, now)
  local raw, a = owned(prefix, id, pool_id, attempt)
  if not raw then
    return -1
  end
  later_srem(pool_key(prefix, pool_id), id)
  later_count(prefix .. 'stats', status)
  close_job(prefix, id, raw, a, status, now, keep_ms, result)
  return 1
end

-- active -> scheduled (retry after delay_ms) | failed (fail.lua, settle.lua).
-- A negative delay_ms means "do not retry". Returns 2 retried, 3 failed, -1 fenced out.
local function fail_job(prefix, id, pool_id, attempt, err, tb, delay_ms, now)
  local raw, a = owned(prefix, id, pool_id, attempt)
  if not raw then
    return -1
  end
  local delay = tonumber(delay_ms)
  later_srem(pool_key(prefix, pool_id), id)
  local r = parse(raw)
  local retries = r and max_retries(prefix, r) or '0'
  if r and delay >= 0 and tonumber(attempt) <= (tonumber(retries) or 0) then
    local due = now + delay
    r[R_STATUS], r[R_DUE], r[R_ATTEMPTS], r[R_RETRIES], r.err, r.tb = 's', int(due), attempt, retries, err, tb
    cache_put(jobs, prefix, id, build(r))
    cache_del(actives, prefix, id)
    later_zadd(prefix .. 'scheduled', int(due), id)
    later_count(prefix .. 'stats', 'retried')
    later.wake = {prefix .. 'idle', prefix}
    return 2
  end
  later_count(prefix .. 'stats', 'failed')
  close_job(prefix, id, raw, a, 'failed', now, -1, '', err, tb)
  return 3
end

-- active -> queued, uncharged (the record keeps its attempts), at the front of its priority
-- band (requeue.lua, settle.lua, reconcile.lua). Returns 1, or -1 when fenced out.
local function give_back_job(prefix, id, pool_id, attempt)
  local raw = owned(prefix, id, pool_id, attempt)
  if not raw then
    return -1
  end
  later_srem(pool_key(prefix, pool_id), id)
  cache_del(actives, prefix, id)
  push_queued(prefix, record_prio(raw), id, true)
  later.wake = {prefix .. 'idle', prefix}
  return 1
end

-- The attempt of an active job (its active entry), or nil.
local function active_attempt(prefix, id)
  local a = cache_get(actives, prefix, id)
  return a and a:match('^[^|]*|([^|]*)|')
end

-- Give back, uncharged, the jobs waiting in a pool's inbox (handed over, never started),
-- and empty it (a pool found dead, see take_idle_slot). Returns how many went back.
give_back_inbox = function(prefix, pool_id)
  local inbox = inbox_key(prefix, pool_id)
  local n = 0
  for _, rec in ipairs(redis.call('LRANGE', inbox, 0, -1)) do
    if rec ~= '' then
      local id = record_id(rec)
      local attempt = active_attempt(prefix, id)
      if attempt and give_back_job(prefix, id, pool_id, attempt) == 1 then
        n = n + 1
      end
    end
  end
  redis.call('DEL', inbox)
  return n
end
