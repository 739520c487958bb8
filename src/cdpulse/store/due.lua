-- What is due in one shard, with the profiles: the batch decides them in the same round trip.
-- KEYS[1] the shard's churn schedule, KEYS[2] its trigger schedule (sorted sets of ids).
-- ARGV[1] due until (epoch ms), ARGV[2] at most this many ids per schedule, ARGV[3] the
-- key prefix. Returns id, alias, version, blob for each id due in either schedule.
-- The profile and alias keys are named here from the id (as ``store/keys.py`` names
-- them), so this script is for a single Redis node; a cluster polls and then reads.
local seen = {}
local out = {}
for k = 1, 2 do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
  for _, id in ipairs(ids) do
    if not seen[id] then
      seen[id] = true
      local tag = ARGV[3] .. ':{' .. id .. '}:'
      local row = redis.call('HMGET', tag .. 'profile', 'v', 'b')
      out[#out + 1] = id
      out[#out + 1] = redis.call('GET', tag .. 'alias')
      out[#out + 1] = row[1]
      out[#out + 1] = row[2]
    end
  end
end
return out
