-- Shared helpers: aiotaskq/_lua.py prepends to each script the top-level statements of this
-- file it uses (each starts at column 0 with `local` or `<name> = function`; keep it so).
-- Time: scripts read the Redis server clock (TIME) so that pools with skewed
-- clocks agree on due times, heartbeats and staleness.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Pub/sub: sharded (SPUBLISH, SSUBSCRIBE) from Redis 7 and Valkey 7.2 on, where a message
-- stays on the shard that holds the channel's slot instead of crossing the whole cluster;
-- plain before. aiotaskq/_listener.py subscribes by the same rule (the server's version).
local SHARDED = (redis.REDIS_VERSION_NUM or 0) >= 0x070000
local function publish(channel, msg)
  if SHARDED then
    redis.call('SPUBLISH', channel, msg)
  else
    redis.call('PUBLISH', channel, msg)
  end
end

-- {channel, subscribers, ...} of the channels, as PUBSUB NUMSUB replies.
local function subscribers(channels)
  if SHARDED then
    return redis.call('PUBSUB', 'SHARDNUMSUB', unpack(channels))
  end
  return redis.call('PUBSUB', 'NUMSUB', unpack(channels))
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

-- The keys of the features a queue may not use at all (pause, rate limits, expiry, keys,
-- dependencies, groups), checked once per call with one EXISTS of them all: a queue that uses
-- none pays that one command, where a check of each cost a claim five. has() answers for one
-- of them, then remembered for the call; mark() records one this call created.
local FLOW_KEYS = {'paused', 'held', 'limits', 'expires', 'keylimits', 'deps', 'groups'}
local present = nil

local function has(prefix, name)
  if present == nil then
    local keys = {}
    for i, k in ipairs(FLOW_KEYS) do
      keys[i] = prefix .. k
    end
    present = {none = redis.call('EXISTS', unpack(keys)) == 0}
  end
  local v = present[name]
  if v == nil then
    v = not present.none and redis.call('EXISTS', prefix .. name) == 1
    present[name] = v
  end
  return v
end

local function mark(name)
  if present then
    present[name] = true
  end
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

-- Take a waiting job out of its band (cancel, reschedule): a scan of that band; a job of a
-- rate-limited task may wait in its task's held list instead (see hold_job), a keyed job in
-- its key's (see key_admit).
local function remove_queued(prefix, prio, id, task, job_key)
  prio = tostring(tonumber(prio) or 0)
  local key = band_key(prefix, prio)
  local removed = redis.call('LREM', key, 1, id)
  if redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', prefix .. 'queued', prio)
  end
  if removed == 0 and task then
    for _, gate in ipairs({task, job_key and job_key ~= '' and '\0' .. task .. '\0' .. job_key or nil}) do
      local held = prefix .. 'held:' .. gate
      if redis.call('LREM', held, 1, id) > 0 then
        if redis.call('EXISTS', held) == 0 then
          redis.call('ZREM', prefix .. 'held', gate)
        end
        break
      end
    end
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
-- of the task name and of the payload; then task name, payload; then the optional sections
-- (see tail() below); then, when the last attempt failed and the job waits for its retry,
-- <bytes of error>|<error><traceback>.
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

-- The optional sections of a record, after its payload, in this order, each
-- <letter><byte length>|<bytes>: k the job's concurrency key (options(key=...)), a its parents
-- (options(after=...): each <length>:<id>), g the mode of a group's callback (r: the members'
-- results as its first argument; e: their errors too). tail() builds them.
local TAIL_FIELD = {k = 'key', a = 'after', g = 'group'}

local function tail(key, after, group)
  local s = ''
  if key ~= '' then
    s = 'k' .. n2s(#key) .. '|' .. key
  end
  if after ~= '' then
    s = s .. 'a' .. n2s(#after) .. '|' .. after
  end
  if group ~= '' then
    s = s .. 'g' .. n2s(#group) .. '|' .. group
  end
  return s
end

local function new_record(status, task, payload, prio, retries, timeout, enq_at, due_at, sections)
  return status .. '|' .. prio .. '|' .. retries .. '|' .. timeout .. '||' .. enq_at .. '|' .. due_at .. '|' ..
    n2s(#task) .. '|' .. n2s(#payload) .. '|' .. task .. payload .. (sections or '')
end

-- The task name and the tail (sections and error) of a record, without copying its payload.
local function task_and_tail(raw)
  local tl, pl, pos = raw:match('^[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|(%d*)|(%d*)|()')
  if not pos then
    return nil
  end
  tl, pl = tonumber(tl) or 0, tonumber(pl) or 0
  return raw:sub(pos, pos + tl - 1), raw:sub(pos + tl + pl)
end

-- One optional section of a record's tail ('' when absent).
local function section(rest, letter)
  local at = 1
  while true do
    local l, len, pos = rest:match('^([kag])(%d+)|()', at)
    if not l then
      return ''
    end
    if l == letter then
      return rest:sub(pos, pos + tonumber(len) - 1)
    end
    at = pos + tonumber(len)
  end
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
  r.key, r.after, r.group, r.err, r.tb = '', '', '', '', ''
  local at = 1
  while true do
    local l, len, p = rest:match('^([kag])(%d+)|()', at)
    if not l then
      break
    end
    r[TAIL_FIELD[l]] = rest:sub(p, p + tonumber(len) - 1)
    at = p + tonumber(len)
  end
  rest = rest:sub(at)
  local le
  le, at = rest:match('^(%d+)|()')
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
    .. tail(r.key or '', r.after or '', r.group or '')
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
local later = {srem = {}, zadd = {}, incr = {}, trim = {}, wake = nil, publish = {}, ended = {}}
local settle_dependents  -- defined with close_job: the jobs that waited for the parents ended in this call

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
-- result() waits: one PUBSUB [SHARD]NUMSUB for the batch costs Redis less than a PUBLISH per job.
local function publish_ends(msgs)
  for i = 1, #msgs, 1000 do
    local channels = {}
    for j = i, math.min(i + 999, #msgs), 2 do
      channels[#channels + 1] = msgs[j]
    end
    local counts = subscribers(channels)
    for k = 2, #counts, 2 do
      if counts[k] > 0 then
        publish(counts[k - 1], msgs[i + k - 1])
      end
    end
  end
end

-- Counts per 10 s for the dashboard's throughput graph: rate:<counter>:<slot> strings, slot
-- = epoch ms // 10000, one INCRBY per counter per call (not per job), each kept two hours.
local RATED = {enqueued = true, succeeded = true, failed = true, retried = true, cancelled = true}
local RATE_SLOT_MS, RATE_KEEP_MS = 10000, 7200000

local function count_rates(stats, counts)
  local slot
  for field, n in pairs(counts) do
    if RATED[field] then
      slot = slot or int(math.floor(now_ms() / RATE_SLOT_MS))
      local key = stats:sub(1, -6) .. 'rate:' .. field .. ':' .. slot  -- stats is <prefix>stats
      if redis.call('INCRBY', key, n) == n then
        redis.call('PEXPIRE', key, RATE_KEEP_MS)
      end
    end
  end
end

local function flush()
  settle_dependents()
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
    count_rates(stats, counts)
  end
  for zset, cutoff in pairs(later.trim) do
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', '(' .. int(cutoff))
  end
  if later.wake then
    wake(later.wake[1], later.wake[2])
  end
  later = {srem = {}, zadd = {}, incr = {}, trim = {}, wake = nil, publish = {}, ended = {}}
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

-- Per-key concurrency (@queue.task(key_concurrency=K), options(key=...)): the `keylimits` hash
-- holds task -> K, written by the pools. A job's gate is <NUL><task><NUL><key> (task names hold
-- no NUL); running:<gate> is the set of its active jobs. A claim starts a keyed job only while
-- its gate runs fewer than K and has no job waiting before it; otherwise the job waits, FIFO, in
-- held:<gate>, with the gate in the `held` zset (see release_held) scored +inf while full: the
-- end of one of its running jobs (release_key) scores it now, and the next claim serves it.
-- Every way out of `active` goes through release_key; a running set that still names a job no
-- longer active (never expected) is cleaned when the gate looks full.
local key_limits_seen, admitted = {}, {}  -- admitted: id -> gate, of the ids this call starts (not active yet)

local function keyed_queue(prefix)
  return has(prefix, 'keylimits')
end

local function key_limit(prefix, task)
  local k = key_limits_seen[task]
  if k == nil then
    k = tonumber(redis.call('HGET', prefix .. 'keylimits', task) or '') or false
    key_limits_seen[task] = k
  end
  return k
end

-- The gate of a record ('' for a job without a key), and its task.
local function key_gate(raw)
  local task, rest = task_and_tail(raw)
  if not task or rest:sub(1, 1) ~= 'k' then
    return '', task
  end
  return '\0' .. task .. '\0' .. section(rest, 'k'), task
end

local function running_key(prefix, gate)
  return prefix .. 'running:' .. gate
end

local function admit(prefix, gate, id)
  redis.call('SADD', running_key(prefix, gate), id)
  admitted[id] = gate
end

-- An id admitted by this call that will not start after all (its task's rate limit held it:
-- see startable): its slot frees, and a gate with jobs waiting opens for the next claim.
local function unadmit(prefix, id)
  local gate = admitted[id]
  if not gate then
    return
  end
  admitted[id] = nil
  redis.call('SREM', running_key(prefix, gate), id)
  if redis.call('EXISTS', prefix .. 'held:' .. gate) == 1 then
    redis.call('ZADD', prefix .. 'held', 0, gate)
  end
end

-- How many jobs of a gate run.
local function running_count(prefix, gate, k)
  local set = running_key(prefix, gate)
  local n = redis.call('SCARD', set)
  if n >= k then
    local ids = redis.call('SMEMBERS', set)
    prefetch(actives, prefix, ids)
    for _, id in ipairs(ids) do
      if not admitted[id] and not cache_get(actives, prefix, id) then
        redis.call('SREM', set, id)
        n = n - 1
      end
    end
  end
  return n
end

-- Of the ids a claim popped, those it may start now; the others wait in their gate's held
-- list. Returns them, and how many wait.
local function key_admit(prefix, popped)
  if not keyed_queue(prefix) then
    return popped, 0
  end
  local out, held = {}, 0
  for _, id in ipairs(popped) do
    local raw = cache_get(jobs, prefix, id)
    local gate, task = '', nil
    if raw then
      gate, task = key_gate(raw)
    end
    local k = gate ~= '' and key_limit(prefix, task)
    if not k then
      out[#out + 1] = id
    else
      local list = prefix .. 'held:' .. gate
      local waiting = redis.call('EXISTS', list) == 1
      local n = running_count(prefix, gate, k)
      if not waiting and n < k then
        admit(prefix, gate, id)
        out[#out + 1] = id
      else
        redis.call('RPUSH', list, id)
        redis.call('ZADD', prefix .. 'held', n < k and 0 or '+inf', gate)
        mark('held')
        held = held + 1
      end
    end
  end
  return out, held
end

-- A job leaves `active` (it ended, waits for a retry, or was given back): its gate's slot frees,
-- and a gate with jobs waiting opens for the next claim, which every idle pool is woken for.
local function release_key(prefix, id, raw)
  if not raw or not keyed_queue(prefix) then
    return
  end
  local gate = key_gate(raw)
  if gate == '' then
    return
  end
  redis.call('SREM', running_key(prefix, gate), id)
  if redis.call('EXISTS', prefix .. 'held:' .. gate) == 1 then
    redis.call('ZADD', prefix .. 'held', 0, gate)
    later.wake = {prefix .. 'idle', prefix}
  end
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

-- Dependencies (options(after=...)) and groups (queue.group): a job enqueued with parents that
-- have not all ended waits as `scheduled`, scored +inf (no claim promotes it), its count of
-- parents still to end in the `deps` hash, its id in each such parent's children:<parent> set.
-- When a parent ends (close_job), settle_dependents, run by flush(), tells each of its waiting
-- children: succeeded counts one down, and the last one releases the child (to `queued`, or
-- `scheduled` at its due time); failed or cancelled fails the child with DependencyFailed,
-- which in turn fails its own children, in the same call. A group's callback (record section
-- g) collects each member's result, or with mode e its error too, in the hash
-- gres:<callback id> (member id -> 'R' result | 'E' <status>\n<error>), which the pool reads to
-- build its first argument; it is kept as long as the callback's ended record.
local function waiting_on_parents(prefix)
  return has(prefix, 'deps')
end

-- The ids in a record's after section (each <length>:<id>).
local function parent_ids(blob)
  local ids, at = {}, 1
  while at <= #blob do
    local n, pos = blob:match('^(%d+):()', at)
    if not n then
      break
    end
    ids[#ids + 1] = blob:sub(pos, pos + tonumber(n) - 1)
    at = pos + tonumber(n)
  end
  return ids
end

-- A job that waited for parents ends (or is released): it leaves `deps` and its parents' sets.
local function forget_parents(prefix, id, raw)
  if redis.call('HDEL', prefix .. 'deps', id) == 1 then
    local _, rest = task_and_tail(raw)
    for _, p in ipairs(parent_ids(section(rest or '', 'a'))) do
      redis.call('SREM', prefix .. 'children:' .. p, id)
    end
  end
end

-- The collected results of a group's callback live as long as its ended record: the `groups`
-- hash names the callbacks whose results have no expiry yet (pending, or ended failed: kept
-- until deleted, purged, or requeued and ended again), so that other jobs' ends only pay one
-- EXISTS per call for it.
local function keep_results(prefix, id, status, keep_ms)
  if not has(prefix, 'groups') or status == 'failed' or redis.call('HDEL', prefix .. 'groups', id) == 0 then
    return
  end
  local key = prefix .. 'gres:' .. id
  if keep_ms == 0 then
    redis.call('DEL', key)
  elseif keep_ms > 0 then
    redis.call('PEXPIRE', key, int(keep_ms))
  end
end

-- End a job as status: out of the jobs and active hashes, its ended record (raw: its record;
-- active: its active entry, '' when it never started) written to job:<id>, expired after
-- keep_ms (0 keeps nothing, negative keeps it forever); its id in the status zset (deferred,
-- with the trim), waiters told on done:<id>. The message is the status; for a job not
-- kept, its outcome itself, which nothing could read again:
-- <status>\n<length of the task name>\n<task name><result>.
local function close_job(prefix, id, raw, active, status, now, keep_ms, result, err, tb)
  keep_ms = tonumber(keep_ms)
  if active ~= '' then
    release_key(prefix, id, raw)
  end
  if waiting_on_parents(prefix) then
    forget_parents(prefix, id, raw)
    if redis.call('EXISTS', prefix .. 'children:' .. id) == 1 then  -- its dependents learn how it ended
      later.ended[#later.ended + 1] = {prefix, id, status, result or '', err or '', now}
    end
  end
  keep_results(prefix, id, status, keep_ms)
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

-- A child whose parents all succeeded: to `queued`, or `scheduled` at a due time still ahead.
local function release_child(prefix, id, raw, now)
  local enq, due = raw:match('^[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)|([^|]*)|')
  due = tonumber(due ~= '' and due or enq) or now
  if due > now then
    later_zadd(prefix .. 'scheduled', int(due), id)
  else
    redis.call('ZREM', prefix .. 'scheduled', id)
    cache_put(jobs, prefix, id, 'q' .. raw:sub(2))
    push_queued(prefix, record_prio(raw), id)
  end
  later.wake = {prefix .. 'idle', prefix}
end

local DEPENDENCY_FAILED = 'DependencyFailed: parent '

-- A waiting child whose parent did not succeed: it ends failed, naming the parent.
local function fail_child(prefix, id, raw, parent, how, now)
  redis.call('ZREM', prefix .. 'scheduled', id)
  redis.call('ZREM', prefix .. 'expires', id)
  later_count(prefix .. 'stats', 'failed')
  close_job(prefix, id, raw, '', 'failed', now, -1, '', DEPENDENCY_FAILED .. parent .. ' ' .. how, '')
end

-- The children of the parents that ended in this call (see waiting_on_parents), until none is left.
settle_dependents = function()
  local i = 1
  while later.ended[i] do
    local prefix, parent, status, result, err, now = unpack(later.ended[i])
    local key = prefix .. 'children:' .. parent
    local kids = redis.call('SMEMBERS', key)
    redis.call('DEL', key)
    for _, kid in ipairs(kids) do
      local left = tonumber(redis.call('HGET', prefix .. 'deps', kid) or '')
      local raw = left and cache_get(jobs, prefix, kid)
      if raw then
        local _, rest = task_and_tail(raw)
        local mode = section(rest or '', 'g')
        if status == 'succeeded' or (mode == 'e' and status ~= 'purged') then
          if mode ~= '' then
            redis.call('HSET', prefix .. 'gres:' .. kid, parent,
              status == 'succeeded' and 'R' .. result or 'E' .. status .. '\n' .. err)
          end
          if left <= 1 then
            forget_parents(prefix, kid, raw)
            release_child(prefix, kid, raw, now)
          else
            redis.call('HINCRBY', prefix .. 'deps', kid, -1)
          end
        else
          fail_child(prefix, kid, raw, parent, status == 'purged' and 'was purged' or 'ended ' .. status, now)
        end
      end
    end
    i = i + 1
  end
  later.ended = {}
end

-- A parent as its child sees it: 'pending' (it waits or runs), or its ended status code
-- ('S', 'F', 'C') and what a group's callback keeps of it in gres:<callback> (see below); nil
-- when it is no job (never one, or its ended record is gone).
local function parent_state(prefix, p)
  if cache_get(jobs, prefix, p) then
    return 'pending'
  end
  local ended = redis.call('GET', prefix .. 'job:' .. p)
  if not ended then
    return nil
  end
  local st, _, _, _, result, err = ended_parts(ended)
  return st, st == 'S' and 'R' .. result or 'E' .. STATUS[st] .. '\n' .. err
end

-- The ids of an after section, each once.
local function unique_parents(after)
  local out, seen = {}, {}
  for _, p in ipairs(parent_ids(after)) do
    if not seen[p] then
      seen[p] = true
      out[#out + 1] = p
    end
  end
  return out
end

-- The parents of a new job: how many it waits for (0: none, it is due as usual), or, when it
-- cannot run, a reason: {'missing', id} for a parent that is no job, {'failed', id, how} for
-- one that ended failed or cancelled (not for a callback of mode e). A parent already ended
-- succeeded (or, for mode e, failed) gives a group's callback its result at once.
local function parents_state(prefix, id, after, group)
  local waiting, collected = {}, {}
  for _, p in ipairs(unique_parents(after)) do
    local st, kept = parent_state(prefix, p)
    if st == 'pending' then
      waiting[#waiting + 1] = p
    elseif not st then
      return {'missing', p}
    elseif st ~= 'S' and group ~= 'e' then
      return {'failed', p, 'ended ' .. STATUS[st]}
    else
      collected[#collected + 1] = p
      collected[#collected + 1] = kept
    end
  end
  if group ~= '' and #collected > 0 then
    redis.call('HSET', prefix .. 'gres:' .. id, unpack(collected))
  end
  return waiting
end

-- A job requeued after DependencyFailed waits for its parents again (requeue_failed.lua): a
-- parent that waits or runs (requeued before it, say) is waited for, as at enqueue; one that
-- ended succeeded counts as done (a group's callback collects its result again: it may have
-- ended after the callback failed), and so does one whose record is gone (an ended record
-- expires; a failed one is kept until deleted), for a callback only when gres:<id> holds its
-- result; one still failed or cancelled (for a callback of mode e: never) leaves the job
-- failed. Returns false then, else how many parents it waits for (0: it is due now).
local function parents_again(prefix, id, rec)
  local _, rest = task_and_tail(rec)
  local mode, waiting, collected = section(rest or '', 'g'), {}, {}
  local results = prefix .. 'gres:' .. id
  for _, p in ipairs(unique_parents(section(rest or '', 'a'))) do
    local st, kept = parent_state(prefix, p)
    if st == 'pending' then
      waiting[#waiting + 1] = p
    elseif st and st ~= 'S' and mode ~= 'e' then
      return false
    elseif st and mode ~= '' then
      collected[#collected + 1] = p
      collected[#collected + 1] = kept
    elseif not st and mode ~= '' and not redis.call('HGET', results, p) then
      return false  -- its result is lost: the callback could not be called as declared
    end
  end
  if #collected > 0 then
    redis.call('HSET', results, unpack(collected))
  end
  for _, p in ipairs(waiting) do
    redis.call('SADD', prefix .. 'children:' .. p, id)
  end
  if #waiting > 0 then
    redis.call('HSET', prefix .. 'deps', id, #waiting)
    mark('deps')
  end
  return #waiting
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

-- Rate limits (@queue.task(rate_limit="N/s")): the `limits` hash holds task -> 'N/period ms',
-- written by the pools. At most N jobs of the task start per fixed window of the period
-- (limit:<task>:<window> counts them, expiring by itself). A job of a limited task that a
-- claim pops with no start left in the window waits in held:<task> (FIFO) instead of the
-- queue, so it never holds up other tasks' jobs, and the `held` zset holds task -> the ms its
-- next window opens: the claims then give out the held jobs first, as many as the window allows.
local limits_seen = {}  -- task -> {n, period} or false, per script call

local function limit_of(prefix, task)
  local lim = limits_seen[task]
  if lim == nil then
    lim = false
    local spec, n, period = redis.call('HGET', prefix .. 'limits', task), nil, nil
    if spec then
      n, period = spec:match('^(%d+)/(%d+)$')
    end
    if n and tonumber(n) > 0 and tonumber(period) > 0 then
      lim = {tonumber(n), tonumber(period)}
    end
    limits_seen[task] = lim
  end
  return lim
end

-- Up to k starts of a limited task in the current window: how many, when the next window
-- opens, and whether this window has starts left after them.
local function take_starts(prefix, task, lim, k, now)
  local window = math.floor(now / lim[2])
  local key = prefix .. 'limit:' .. task .. ':' .. int(window)
  local left = lim[1] - tonumber(redis.call('GET', key) or '0')
  local grant = math.max(0, math.min(k, left))
  if grant > 0 and redis.call('INCRBY', key, grant) == grant then
    redis.call('PEXPIRE', key, lim[2] * 2)
  end
  return grant, (window + 1) * lim[2], left > grant
end

local function hold_job(prefix, task, id, next_ms)
  redis.call('RPUSH', prefix .. 'held:' .. task, id)
  redis.call('ZADD', prefix .. 'held', int(next_ms), task)
  mark('held')
end

-- How many of a gate's held jobs may start now (at most grant): its free slots, and, for a
-- task that is rate-limited too, the starts its window has left (taken here). Returns them,
-- whether the gate has more, and when to look at it again ('+inf': when one of its jobs ends,
-- see release_key; else the next window's opening).
local function gate_grant(prefix, gate, task, grant, now)
  local k = key_limit(prefix, task)
  local free = k and k - running_count(prefix, gate, k) or grant
  local more, next_ms = free > grant, '+inf'
  grant = math.max(0, math.min(grant, free))
  local lim = grant > 0 and limit_of(prefix, task)
  if lim then
    local took, window_ms, left = take_starts(prefix, task, lim, grant, now)
    if (more or took < grant) and not left then  -- free slots left, but no start: the next window opens them
      more, next_ms = false, window_ms
    end
    grant = took
  end
  return grant, more, next_ms
end

-- Jobs a rate-limited task's held list gave out (their starts taken) that are keyed too pass
-- their key's gate (see key_admit): one whose gate is full waits there, its start given back.
local function gate_released(prefix, task, lim, got, now)
  local ok, waiting = key_admit(prefix, got)
  if waiting > 0 then
    redis.call('INCRBY', prefix .. 'limit:' .. task .. ':' .. int(math.floor(now / lim[2])), -waiting)
  end
  return ok
end

-- The highest priority waiting in the bands (nil when none waits).
local function top_priority(prefix)
  local top = redis.call('ZRANGE', prefix .. 'queued', 0, 0)[1]
  return top and (tonumber(top) or 0) or nil
end

-- How many of a held list's first n jobs, in a row, have a priority of at least min_prio.
local function ahead_of(prefix, list, n, min_prio)
  local ids = redis.call('LRANGE', list, 0, n - 1)
  prefetch(jobs, prefix, ids)
  for k, id in ipairs(ids) do
    local raw = cache_get(jobs, prefix, id)
    if raw and (tonumber(record_prio(raw)) or 0) < min_prio then
      return k - 1
    end
  end
  return #ids
end

-- Up to grant of the jobs held at one gate (a rate-limited task, or a key: see key_admit) of
-- the `waiting` there, as its window's starts and its key's free slots allow, appended to ids;
-- the gate is scored for when to look again.
local function release_from(prefix, gate, waiting, grant, now, ids)
  local list, next_ms, more = prefix .. 'held:' .. gate, now, true
  local gate_task = gate:match('^%z(.-)%z')
  local lim = not gate_task and limit_of(prefix, gate)
  if gate_task then  -- a key's gate (see key_admit): as many as it has free slots (and starts)
    grant, more, next_ms = gate_grant(prefix, gate, gate_task, grant, now)
  elseif lim then  -- (a task no longer limited: its held jobs go out freely)
    grant, next_ms, more = take_starts(prefix, gate, lim, grant, now)
  end
  if more then  -- this window (this gate) has starts left: the next claim, another pool's, may take them
    next_ms = now
  end
  local got = grant > 0 and redis.call('LPOP', list, grant) or {}
  if lim and keyed_queue(prefix) and key_limit(prefix, gate) then
    got = gate_released(prefix, gate, lim, got, now)
  end
  for _, id in ipairs(got) do
    ids[#ids + 1] = id
    if gate_task and cache_get(jobs, prefix, id) then  -- (an id that is no job takes no slot)
      admit(prefix, gate, id)
    end
  end
  if grant >= waiting then
    redis.call('ZREM', prefix .. 'held', gate)
  else
    redis.call('ZADD', prefix .. 'held', next_ms == '+inf' and next_ms or int(next_ms), gate)
  end
end

-- The held jobs whose gate is open now, up to n; with min_prio, only those of that priority or
-- more, in a row from each list's head (a claim gives those out before the bands, the others
-- after them: a held job does not start before a queued one of higher priority).
local function release_held(prefix, n, now, min_prio)
  local ids = {}
  if n <= 0 or not has(prefix, 'held') then
    return ids
  end
  for _, gate in ipairs(redis.call('ZRANGEBYSCORE', prefix .. 'held', '-inf', int(now), 'LIMIT', 0, 100)) do
    local waiting = redis.call('LLEN', prefix .. 'held:' .. gate)
    local grant = math.min(n - #ids, waiting)
    if min_prio and grant > 0 then
      grant = ahead_of(prefix, prefix .. 'held:' .. gate, grant, min_prio)
    end
    if grant > 0 or waiting == 0 then
      release_from(prefix, gate, waiting, grant, now, ids)
    end
    if #ids >= n then
      break
    end
  end
  return ids
end

-- Of the ids a claim popped, those it may start: a job of a limited task with no start left
-- waits in its held list. Returns them, and how many were held.
local function startable(prefix, popped, now)
  if not has(prefix, 'limits') then
    return popped, 0
  end
  local by_task, order = {}, {}
  for _, id in ipairs(popped) do
    local r = parse(cache_get(jobs, prefix, id))
    local task = r and r.task or ''
    if not by_task[task] then
      by_task[task] = {}
      order[#order + 1] = task
    end
    local ids = by_task[task]
    ids[#ids + 1] = id
  end
  local out, held = {}, 0
  for _, task in ipairs(order) do
    local ids, lim = by_task[task], limit_of(prefix, task)
    local grant, next_ms = #ids, 0
    if lim then
      grant, next_ms = take_starts(prefix, task, lim, #ids, now)
    end
    for k, id in ipairs(ids) do
      if k <= grant then
        out[#out + 1] = id
      else
        unadmit(prefix, id)  -- (a keyed job admitted before: it does not start now)
        hold_job(prefix, task, id, next_ms)
        held = held + 1
      end
    end
  end
  return out, held
end

-- Jobs enqueued with options(expires=...): the `expires` zset holds id -> latest start (ms:
-- the due time plus the expiry). pop_unexpired pops up to n queued ids for a claim, ending
-- cancelled (with the reason as its error) each one past its latest start and popping again
-- in its place, 1000 at most per call; the ids it hands out leave the zset (they start).
local EXPIRED = 'Expired: not started by its latest start time (the expires= option of its enqueue)'

local function pop_unexpired(prefix, n, now, keep_fallback)
  local key = prefix .. 'expires'
  if not has(prefix, 'expires') then
    return pop_queued(prefix, n)
  end
  local out, dropped = {}, 0
  while #out < n and dropped < 1000 do
    local popped = pop_queued(prefix, n - #out)
    if #popped == 0 then
      break
    end
    local latest = redis.call('ZMSCORE', key, unpack(popped))
    local watched = {}
    for k, id in ipairs(popped) do
      if latest[k] then
        watched[#watched + 1] = id
      end
      local raw = latest[k] and tonumber(latest[k]) < now and cache_get(jobs, prefix, id)
      if raw then
        local r = parse(raw)
        later_count(prefix .. 'stats', 'cancelled')
        close_job(prefix, id, raw, '', 'cancelled', now, task_keep(prefix, r and r.task, keep_fallback), '', EXPIRED)
        dropped = dropped + 1
      else
        out[#out + 1] = id
      end
    end
    if #watched > 0 then
      redis.call('ZREM', key, unpack(watched))
    end
  end
  return out
end

-- Store a new job, queued or scheduled: the body of enqueue.lua, shared with tick.lua.
-- prio, retries, timeout, delay_ms, at_ms as in an option group of enqueue.lua's ARGV;
-- fresh: the id was generated by the producer, so no ended job can have it. Returns 1 when
-- written, 0 when a job with this id is scheduled, queued or active. The caller runs
-- flush() (the hashes, the enqueued counter, wake-ups). A job due now goes straight to an
-- idle pool when there is one (the hand-off: active under that pool, its record pushed to
-- the pool's inbox, on which the pool blocks), so it starts one round trip after it was
-- sent; otherwise it waits in `queued`.
local function enqueue_job(prefix, now, id, task, payload, prio, retries, timeout, delay_ms, at_ms, fresh, expires_ms,
                           key, after, group)
  key, after, group = key or '', after or '', group or ''
  if cache_get(jobs, prefix, id) then
    return 0
  end
  local waits, failed, state_parents = 0, nil, nil
  if after ~= '' then
    local state = parents_state(prefix, id, after, group)
    if state[1] == 'missing' then
      return 'missing:' .. state[2]  -- nothing written: the producer raises JobNotFound
    elseif state[1] == 'failed' then
      failed = state
    else
      waits, state_parents = #state, state
    end
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
  if failed then
    status = 'q'  -- ended below, before it is stored anywhere
  elseif waits > 0 then  -- it waits for its parents: no claim promotes it (see waiting_on_parents)
    status = 's'
    later_zadd(prefix .. 'scheduled', '+inf', id)
    redis.call('HSET', prefix .. 'deps', id, waits)
    mark('deps')
    for _, p in ipairs(state_parents or {}) do
      redis.call('SADD', prefix .. 'children:' .. p, id)
    end
  elseif due > now then
    status = 's'
    later_zadd(prefix .. 'scheduled', int(due), id)
    later.wake = {prefix .. 'idle', prefix}  -- idle pools plan their next claim from the earliest due time
  else
    if later.no_idle == nil then  -- a paused queue hands nothing to its idle pools (pause.lua)
      later.no_idle = has(prefix, 'paused')
      later.limited = not later.no_idle and has(prefix, 'limits')
    end
    if key ~= '' or (later.limited and limit_of(prefix, task)) then  -- a keyed or limited start: by a claim
      later.wake = {prefix .. 'idle', prefix}
    elseif not later.no_idle then
      pool_id = take_idle_slot(prefix, now)
      later.no_idle = not pool_id  -- no pool goes idle while this script runs
    end
    if not pool_id then
      push_queued(prefix, prio, id)
    end
  end
  local raw = new_record(status, task, payload, prio, retries, timeout, now_s, due ~= now and int(due) or '',
    tail(key, after, group))
  cache_put(jobs, prefix, id, raw)
  if group ~= '' then  -- a group's callback: see keep_results
    redis.call('HSET', prefix .. 'groups', id, 1)
    mark('groups')
  end
  if failed then  -- a parent ended failed or cancelled: so does this job, at once
    later_count(prefix .. 'stats', 'enqueued')
    later_count(prefix .. 'stats', 'failed')
    close_job(prefix, id, raw, '', 'failed', now, -1, '', DEPENDENCY_FAILED .. failed[2] .. ' ' .. failed[3], '')
    return 1
  end
  if expires_ms and expires_ms ~= '' and not pool_id then  -- a hand-off starts now: no expiry to watch
    later_zadd(prefix .. 'expires', int(due + tonumber(expires_ms)), id)
  end
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
    release_key(prefix, id, raw)
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
  release_key(prefix, id, raw)
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
