-- Raise per-partition watermarks: KEYS[1] a hash; ARGV pairs of (partition, millis).
-- Only ever raises, so a late or repeated batch cannot move event time backwards.
for i = 1, #ARGV, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > current then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
