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
-- Job, pool-set and channel names are built from the prefix; they share the queue's hash tag.
-- Returns one code per outcome, as the single-transition scripts return them.
-- Time: Redis TIME, read once for the batch.
local prefix = ARGV[1]
local now = now_ms()
local ended = {succeeded = KEYS[3], cancelled = KEYS[5]}
local out = {}
for i, o in ipairs(cmsgpack.unpack(ARGV[2])) do
  local kind, id, pool_id, attempt, data = o[1], o[2], o[3], tostring(o[4]), ARGV[2 + i]
  local job_key, pool_set = prefix .. 'job:' .. id, pool_key(prefix, pool_id)
  local code
  if kind == 'fail' then
    code = fail_job(job_key, pool_set, KEYS[1], KEYS[4], KEYS[6], KEYS[7], id, pool_id, attempt, data, o[5],
      o[6], prefix .. 'done:' .. id, prefix, now)
  elseif kind == 'requeue' then
    code = give_back_job(job_key, pool_set, KEYS[7], id, pool_id, attempt, prefix)
  else
    code = finish_job(job_key, pool_set, ended[kind], KEYS[6], id, pool_id, attempt, kind, data, o[6],
      prefix .. 'done:' .. id, now)
  end
  out[#out + 1] = code
end
flush()
return out
