-- advance: time passes for a queue's waiting work, in tests (aiotaskq.testing.advance): every
-- delayed job, retry waiting for its backoff and next run of a schedule becomes due ARGV[2] ms
-- sooner; what is then due runs at once.
-- KEYS[1] scheduled zset, KEYS[2] schedules:next zset, KEYS[3] idle zset
-- ARGV[1] key prefix aiotaskq:{Q}:, ARGV[2] ms, ARGV[3] the schedules:wake channel
-- Jobs waiting for parents (scored +inf) stay as they are. Wakes the idle pools (their claim
-- promotes what is due) and the schedulers (they plan from the next runs). Redis's clock does
-- not move: a record's due time (JobInfo.scheduled_at) still shows the time it was given, and a
-- schedule's tick is the moved next run. Returns {jobs moved, schedules moved}.
local ms = tonumber(ARGV[2])
local moved = {0, 0}
for k, zset in ipairs({KEYS[1], KEYS[2]}) do
  local entries = redis.call('ZRANGEBYSCORE', zset, '-inf', '(inf', 'WITHSCORES')
  local args = {}
  for i = 1, #entries, 2 do
    args[#args + 1] = int(tonumber(entries[i + 1]) - ms)
    args[#args + 1] = entries[i]
  end
  for i = 1, #args, 1000 do
    redis.call('ZADD', zset, 'XX', unpack(args, i, math.min(i + 999, #args)))
  end
  moved[k] = #entries / 2
end
wake(KEYS[3], ARGV[1])
publish(ARGV[3], 'advance')
return moved
