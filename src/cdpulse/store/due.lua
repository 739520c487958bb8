-- What is due, with the profiles: the batch decides them in the same round trip.
-- KEYS: schedules (sorted sets of ids): on one Redis, one partition's churn and trigger
-- schedules; on a Redis Cluster, those of every partition polled in one shard.
-- ARGV[1] due until (epoch ms), ARGV[2] at most this many ids per schedule, ARGV[3] the
-- key prefix, ARGV[4] (a Redis Cluster) the shard's head. Returns id, alias, version, blob
-- for each id due in any schedule.
-- The profile and alias keys are named here from the id (as ``store/keys.py`` names
-- them): {prefix}:{<id>}: on one Redis, head .. id .. '}:' on a Redis Cluster, where a
-- shard's ids and schedules share one slot.
local head = ARGV[4] or (ARGV[3] .. ':{')
local seen = {}
local out = {}
for k = 1, #KEYS do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
  for _, id in ipairs(ids) do
    if not seen[id] then
      seen[id] = true
      local tag = head .. id .. '}:'
      local row = redis.call('HMGET', tag .. 'profile', 'v', 'b')
      out[#out + 1] = id
      out[#out + 1] = redis.call('GET', tag .. 'alias')
      out[#out + 1] = row[1]
      out[#out + 1] = row[2]
    end
  end
end
return out
