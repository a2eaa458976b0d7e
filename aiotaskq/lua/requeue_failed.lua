-- requeue_failed: failed -> queued (attempts and last error reset); a job that failed with
-- DependencyFailed -> waiting for its parents again (see parents_again in _lib.lua)
-- KEYS[1] failed zset, KEYS[2] queued zset (bands), KEYS[3] idle zset
-- ARGV[1] key prefix aiotaskq:{Q}:, ARGV[2] batch size, ARGV[3] how many of the oldest failed
-- jobs to pass over (the ones earlier calls left failed)
-- ARGV[4..] ids to requeue; with none, the oldest `batch size` failed jobs after those.
-- Returns {requeued, ids looked at, left failed}: ids that are not failed are skipped; a
-- DependencyFailed job whose parent is still failed or cancelled is left failed. The others
-- are requeued before the DependencyFailed ones, and those until none more can be, so that
-- requeueing a failed parent and its failed children together makes the children wait for it.
local prefix, batch, offset = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3] or '0') or 0
local ids = {}
for i = 4, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
if #ids == 0 then
  ids = redis.call('ZRANGE', KEYS[1], offset, offset + batch - 1)
end
prefetch(jobs, prefix, ids)
local n = 0
local children = {}  -- failed with DependencyFailed: {id, ended record key, record}

local function requeue(id, key, r, waits)
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
  r[R_ATTEMPTS], r.err, r.tb = '', '', ''
  if waits > 0 then  -- no claim promotes it until its parents end (see waiting_on_parents)
    r[R_STATUS] = 's'
    cache_put(jobs, prefix, id, build(r))
    redis.call('ZADD', prefix .. 'scheduled', '+inf', id)
  else
    r[R_STATUS] = 'q'
    cache_put(jobs, prefix, id, build(r))
    push_queued(prefix, r[R_PRIO], id)
  end
  n = n + 1
end

for _, id in ipairs(ids) do
  local key = prefix .. 'job:' .. id
  local ended = redis.call('GET', key)
  local st, err, rec
  if ended then
    st, _, _, _, _, err, _, rec = ended_parts(ended)
  end
  local r = st == 'F' and not cache_get(jobs, prefix, id) and parse(rec)
  if not r then
    redis.call('ZREM', KEYS[1], id)
  elseif err:sub(1, #DEPENDENCY_FAILED) == DEPENDENCY_FAILED then
    children[#children + 1] = {id, key, rec}
  else
    requeue(id, key, r, 0)
  end
end
local left = children
repeat  -- a chain's children, each once its parent is waiting again
  local still = {}
  for _, c in ipairs(left) do
    local waits = parents_again(prefix, c[1], c[3])
    if waits then
      requeue(c[1], c[2], parse(c[3]), waits)
    else
      still[#still + 1] = c
    end
  end
  local progress = #still < #left
  left = still
until not progress or #left == 0
flush()
if n > 0 then
  wake(KEYS[3], prefix)
end
return {n, #ids, #left}
