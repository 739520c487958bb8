-- Publish a model snapshot only when it is newer than the stored one.
-- KEYS[1] hash {version, blob}; ARGV[1] version; ARGV[2] blob. Returns 1 when stored.
-- During a rebalance an old learner may still finish a batch: it must not roll back.
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if tonumber(ARGV[1]) <= current then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'blob', ARGV[2])
return 1
