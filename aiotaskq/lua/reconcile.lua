-- reconcile: active -> queued, uncharged, for jobs a pool holds but never started
-- (a claim or inbox reply lost with the connection, or a pool that stops claiming)
-- KEYS[1] pool set, KEYS[2] inbox list of the pool, KEYS[3] queued zset, KEYS[4] idle zset
-- ARGV[1] key prefix aiotaskq:{Q}:, ARGV[2] pool id
-- ARGV[3] '1' when the pool stops claiming: it leaves `idle` and the jobs waiting in
--   its inbox go back too; '0' leaves the inbox to the pool
-- ARGV[4..] ids the pool knows: running, or with an outcome not written yet
-- Each job given back is fenced on (status active, this pool, its attempt).
-- Returns how many jobs went back.
local prefix, pool_id, leaving = ARGV[1], ARGV[2], ARGV[3] == '1'
local known = {}
for i = 4, #ARGV do
  known[ARGV[i]] = true
end
if leaving then
  redis.call('ZREM', KEYS[4], pool_id)
  redis.call('DEL', KEYS[2])
else
  for _, rec in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    if rec ~= '' then
      known[record_id(rec)] = true
    end
  end
end
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not known[id] then
    local attempt = active_attempt(prefix, id)
    if attempt and give_back_job(prefix, id, pool_id, attempt) == 1 then
      n = n + 1
    end
  end
end
flush()
return n
