-- Move or remove due times only where nobody moved them since they were read.
-- KEYS[1] the sorted set; ARGV triples (id, score as read, new score or '' to remove).
-- A batch that scheduled a newer due time meanwhile (on another worker) keeps it: the
-- expiry's view of that watch is older than the batch's.
local changed = 0
for i = 1, #ARGV, 3 do
  local current = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if current and tonumber(current) == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == '' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
    end
    changed = changed + 1
  end
end
return changed
