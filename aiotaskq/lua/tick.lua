-- tick: run one tick of a recurring schedule: enqueue its job and advance its next run, in
-- one step, only if the schedule still holds the next run and spec the caller planned from
-- KEYS[1] schedules hash, KEYS[2] schedules:next zset, KEYS[3] schedules:last hash
--         (see schedule_set.lua); the job's keys are built from the prefix, as enqueue.lua does
-- ARGV[1] schedule key, ARGV[2] the next run the caller saw (epoch ms)
-- ARGV[3] the spec the caller planned with
-- ARGV[4] the tick to enqueue a job for (epoch ms; '' = none: missed ticks skipped)
-- ARGV[5] the next run to store (epoch ms, later than ARGV[2]; '' = none: the schedule ended)
-- ARGV[6] job id (derived from the schedule key and the tick), ARGV[7] task name,
-- ARGV[8] payload (msgpack [args, kwargs]), ARGV[9] priority, ARGV[10] key prefix aiotaskq:{Q}:
-- ARGV[11] '1': the schedule does not overlap: no job while the previous tick's is pending
-- Returns 1 job enqueued; 2 advanced without a job (ticks skipped, or a job with this id
--   still pending); 3 advanced without a job: the previous tick's job is still pending (no
--   overlap); 0 stale: the schedule no longer holds that next run and spec (another
--   pool ran the tick first, or it was changed or removed): nothing written;
--   -1 too early: the server clock has not reached the tick: nothing written.
-- Time: Redis TIME, so a pool whose clock runs ahead can never run a tick early. Job-id
-- deduplication alone would not do: a fast tick's job may have ended (and its id be free
-- again) before a slower pool looks at the same tick; the next-run check cannot be fooled.
local key, seen, spec, fire, next_run = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local current = redis.call('ZSCORE', KEYS[2], key)
if not current or tonumber(current) ~= seen or redis.call('HGET', KEYS[1], key) ~= spec then
  return 0
end
local now = now_ms()
if seen > now or (fire ~= '' and tonumber(fire) > now) then
  return -1
end
if next_run == '' then
  redis.call('ZREM', KEYS[2], key)
elseif tonumber(next_run) <= seen then
  return redis.error_reply('tick: the next run must be later than the one seen')
else
  redis.call('ZADD', KEYS[2], next_run, key)
end
if fire == '' then
  return 2
end
if ARGV[11] == '1' then
  local last = redis.call('HGET', KEYS[3], key)
  if last and redis.call('HGET', ARGV[10] .. 'jobs', 'schedule:' .. key .. ':' .. last) then
    return 3
  end
end
redis.call('HSET', KEYS[3], key, fire)
local code = enqueue_job(ARGV[10], now, ARGV[6], ARGV[7], ARGV[8], ARGV[9], '', '', '', fire, false)
flush()
if code == 1 then
  return 1
end
return 2
