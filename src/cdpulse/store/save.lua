-- Compare-and-set one profile.
-- KEYS[1] profile hash {v, b}; KEYS[2] the id's alias key.
-- ARGV[1] the version the caller read; ARGV[2] the new encoded profile;
-- ARGV[3] retention in ms (0: none): a profile not written for that long expires.
-- Returns the new version, -1 when the version moved, -2 when the id is now an alias.
-- The alias check lives here, on the profile's own slot, so that once an anonymous id
-- is linked to a customer no late write can reach its (frozen, merged) profile.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -2
end
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if version ~= tonumber(ARGV[1]) then
  return -1
end
redis.call('HSET', KEYS[1], 'v', version + 1, 'b', ARGV[2])
if tonumber(ARGV[3] or '0') > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return version + 1
