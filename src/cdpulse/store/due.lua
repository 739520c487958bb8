-- What is due, with the profiles: the batch decides them in the same round trip.
-- KEYS: schedules (sorted sets of ids): on one Redis, one partition's churn and trigger
-- schedules; on a Redis Cluster, those of every partition polled in one shard.
-- ARGV[1] due until (epoch ms), ARGV[2] at most this many ids per schedule, ARGV[3] the
-- key prefix, ARGV[4] (a Redis Cluster) the shard's head. Returns {rows, cuts}: rows holds
-- id, alias, version, blob for each id due in any schedule; cuts the schedule's number
-- (1-based, in KEYS), due time and id of the last id of each schedule that gave as many
-- as it may (more may be due after it: a batch decides the churn labels only up to
-- there, so that they come in decision order).
-- The profile and alias keys are named here from the id (as ``store/keys.py`` names
-- them): {prefix}:{<id>}: on one Redis, head .. id .. '}:' on a Redis Cluster, where a
-- shard's ids and schedules share one slot.
local head = ARGV[4] or (ARGV[3] .. ':{')
local seen = {}
local out = {}
local cuts = {}
local limit = tonumber(ARGV[2])
for k = 1, #KEYS do
  local found = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit)
  if #found >= 2 * limit then
    cuts[#cuts + 1] = k
    cuts[#cuts + 1] = found[#found]
    cuts[#cuts + 1] = found[#found - 1]
  end
  for i = 1, #found, 2 do
    local id = found[i]
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
return {out, cuts}
