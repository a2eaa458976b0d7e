-- settle: a batch of attempts ends in one call (the pool's finisher). Each outcome is the
-- transition of finish.lua (active -> succeeded | cancelled), fail.lua (active -> scheduled |
-- failed) or requeue.lua (active -> queued, uncharged), fenced the same way.
-- KEYS[1] scheduled zset, KEYS[2] queued zset, KEYS[3] succeeded zset, KEYS[4] failed zset
-- KEYS[5] cancelled zset, KEYS[6] stats hash, KEYS[7] idle zset
-- ARGV[1] key prefix aiotaskq:{Q}:
-- ARGV[2] the outcomes, msgpack: an array of 6-element arrays
--   [kind ('succeeded' | 'cancelled' | 'fail' | 'requeue'), job id, pool id, attempt number,
--    traceback (fail, else ''),
--    n (keep ms for succeeded/cancelled, retry delay ms for fail (negative: no retry), else 0)]
-- ARGV[2 + i] the data of outcome i: the result (msgpack bytes) for succeeded, the error text
--   for fail, else '' (apart: Redis's cmsgpack cannot read msgpack's bin type)
-- (Packed: sending 7 arguments per outcome cost the pool more than the rest of settling.)
-- The jobs hash, job, pool-set and channel names are built from the prefix; they share the
-- queue's hash tag.
-- Returns one code per outcome, as the single-transition scripts return them.
-- Time: Redis TIME, read once for the batch.
local prefix = ARGV[1]
local now = now_ms()
local outcomes = cmsgpack.unpack(ARGV[2])
local ids = {}
for i, o in ipairs(outcomes) do
  ids[i] = o[2]
end
prefetch(actives, prefix, ids)
prefetch(jobs, prefix, ids)
local out = {}
for i, o in ipairs(outcomes) do
  local kind, id, pool_id, attempt, data = o[1], o[2], o[3], n2s(o[4]), ARGV[2 + i]
  local code
  if kind == 'fail' then
    code = fail_job(prefix, id, pool_id, attempt, data, o[5], o[6], now)
  elseif kind == 'requeue' then
    code = give_back_job(prefix, id, pool_id, attempt)
  else
    code = finish_job(prefix, id, pool_id, attempt, kind, data, o[6], now)
  end
  out[#out + 1] = code
end
flush()
return out
