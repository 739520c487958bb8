-- Save one profile and everything that changes with it, or nothing: compare-and-set.
-- KEYS[1] the profile hash {v, b}; KEYS[2] the id's own alias key; KEYS[3] the profile
-- counter; KEYS[4 .. 3+L] alias keys of the visitors this save links to the profile;
-- further keys are named by the operations.
-- ARGV[1] the version the caller read; ARGV[2] the encoded profile; ARGV[3] retention
-- in ms (0: none); ARGV[4] the profile id; ARGV[5] L; then operations, five values each
-- (name, key index, second key index, a, b), run only if the compare-and-set passes:
--   zadd k - score member | zrem k - - member | hset k - field value
--   set k - value px(0: none) | setnx k - value px(0: none)
--   del k - - version (a merged visitor's profile: refused unless still at the version
--     merged, as a write to it since would be lost; deleted, the counter goes down)
--   convert k1 k2 customer variant: HSETNX k1, and if new HINCRBY k2 conversions:<variant>
--   claim k1 k2 ttl counter: SET k1 NX EX ttl, and if new HINCRBY k2 <counter>
-- Returns the new version, -1 when the version (or a merged visitor's) moved, -2 when the
-- id is now someone's visitor, -3 when a visitor to link belongs to someone else. Every
-- condition is checked before anything is written: a refused save changes nothing.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -2
end
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if version ~= tonumber(ARGV[1]) then
  return -1
end
local id = ARGV[4]
local links = tonumber(ARGV[5])
for i = 4, 3 + links do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= id then
    return -3
  end
end
for i = 6, #ARGV, 5 do
  if ARGV[i] == 'del' then
    local merged = tonumber(redis.call('HGET', KEYS[tonumber(ARGV[i + 1])], 'v') or '0')
    if merged ~= tonumber(ARGV[i + 4]) then
      return -1
    end
  end
end
local retention = tonumber(ARGV[3])
for i = 4, 3 + links do
  if retention > 0 then
    redis.call('SET', KEYS[i], id, 'PX', retention)
  else
    redis.call('SET', KEYS[i], id)
  end
end
redis.call('HSET', KEYS[1], 'v', version + 1, 'b', ARGV[2])
if retention > 0 then
  redis.call('PEXPIRE', KEYS[1], retention)
end
if version == 0 then
  redis.call('INCR', KEYS[3])
end
for i = 6, #ARGV, 5 do
  local op, key, other, a, b = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if op == 'zadd' then
    redis.call('ZADD', key, a, b)
  elseif op == 'zrem' then
    redis.call('ZREM', key, b)
  elseif op == 'hset' then
    redis.call('HSET', key, a, b)
  elseif op == 'set' then
    if tonumber(b) > 0 then
      redis.call('SET', key, a, 'PX', b)
    else
      redis.call('SET', key, a)
    end
  elseif op == 'setnx' then
    if tonumber(b) > 0 then
      redis.call('SET', key, a, 'NX', 'PX', b)
    else
      redis.call('SET', key, a, 'NX')
    end
  elseif op == 'del' then
    if redis.call('DEL', key) == 1 then
      redis.call('DECR', KEYS[3])
    end
  elseif op == 'convert' then
    if redis.call('HSETNX', key, a, b) == 1 then
      redis.call('HINCRBY', KEYS[tonumber(other)], 'conversions:' .. b, 1)
    end
  elseif op == 'claim' then
    if redis.call('SET', key, 1, 'NX', 'EX', a) then
      redis.call('HINCRBY', KEYS[tonumber(other)], b, 1)
    end
  end
end
return version + 1
