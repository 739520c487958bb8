-- Clear a customer's pending segment transitions once the broker has them, unless a newer
-- batch staged others meanwhile (then those stay pending for their own clear).
-- KEYS[1] the customer's segments hash; KEYS[2] the set of customers with pending ones.
-- ARGV[1] the pending value that was published; ARGV[2] the customer id.
if redis.call('HGET', KEYS[1], '~pending') == ARGV[1] then
  redis.call('HDEL', KEYS[1], '~pending', '~staged')
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
return 0
