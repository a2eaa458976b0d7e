-- progress: store the progress a running attempt reports (current_job().progress)
-- KEYS[1] job:<id> (unused: the record is in the jobs hash while the job is active)
-- ARGV[1] pool id, ARGV[2] attempt number: fenced, only the attempt that owns the job writes
-- ARGV[3] progress, a number from 0 to 1 (as text; checked by the caller)
-- ARGV[4] note ('' removes the previous note), ARGV[5] job id, ARGV[6] key prefix aiotaskq:{Q}:
-- Returns 1 stored, -1 fenced out (the job is not active under this pool at this attempt).
-- No time is read: progress carries none.
local pool_id, attempt, value, note, id, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local raw, a = owned(prefix, id, pool_id, attempt)
if not raw then
  return -1
end
local pool, att, start, cancel = active_fields(a)
cache_put(actives, prefix, id, pool .. '|' .. att .. '|' .. start .. '|' .. cancel .. '|' .. value .. '|' .. note)
flush()
return 1
