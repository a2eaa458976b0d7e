-- progress: store the progress a running attempt reports (current_job().progress)
-- KEYS[1] job hash       aiotaskq:{Q}:job:<id>
-- ARGV[1] pool id, ARGV[2] attempt number: fenced, only the attempt that owns the job writes
-- ARGV[3] progress, a number from 0 to 1 (as text; checked by the caller)
-- ARGV[4] note ('' removes the previous note)
-- Returns 1 stored, -1 fenced out (the job is not active under this pool at this attempt).
-- No time is read: progress carries none.
local job_key, pool_id, attempt, value, note = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not owned(job_key, pool_id, attempt) then
  return -1
end
if note == '' then
  redis.call('HSET', job_key, 'progress', value)
  redis.call('HDEL', job_key, 'progress_note')
else
  redis.call('HSET', job_key, 'progress', value, 'progress_note', note)
end
return 1
