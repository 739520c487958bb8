-- Record a customer once and count it: exposures and conversions of an experiment.
-- KEYS[1] hash customer -> value; KEYS[2] hash of counters.
-- ARGV[1] customer; ARGV[2] value; ARGV[3] counter field.
-- Returns {1, value} when recorded now, {0, stored value} when it was already there, so
-- a redelivered batch or a second request never counts a customer twice.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  return {1, ARGV[2]}
end
return {0, redis.call('HGET', KEYS[1], ARGV[1])}
