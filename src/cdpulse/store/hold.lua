-- The first step of a save on a Redis Cluster (``store/links.py``), in one slot of the ids
-- it links or retires, which are not in its own: check them as ``write.lua`` does on one
-- Redis, then link the visitors and hold the profiles to retire against other writes.
-- ARGV[1]: [head, token, hold ms, retention ms (0: none), groups], a group being one
-- save's entries in this slot:
--   ["link", visitor, customer, version merged or false]: refused -3 when the visitor is
--       linked to someone else, or has a profile and no version (the save does not merge
--       it); -1 when the merged version moved. Linked (the alias set) once held.
--   ["retire", id, version merged]: -1 when its version moved.
-- An id held by another write (its hold names another token) is refused -1. A group's
-- entries are all checked before any is written: a refused group changes nothing.
-- An id's keys start with head .. id .. '}:' ({prefix}:{<tag>}{<id>}:, ``store/keys.py``).
-- Returns, per group, 0 (linked and held) or the refusal.
local request = cmsgpack.unpack(ARGV[1])
local head, token, hold_ms = request[1], request[2], request[3]
local retention, groups = tonumber(request[4]), request[5]
local function at(id)
  return head .. id .. '}:'
end
local function check(entry)
  local kind, tag = entry[1], at(entry[2])
  local holder = redis.call('GET', tag .. 'hold')
  if holder and holder ~= token then
    return -1
  end
  local expected = entry[3]
  if kind == 'link' then
    local owner = redis.call('GET', tag .. 'alias')
    if owner and owner ~= entry[3] then
      return -3
    end
    expected = entry[4]
    if not expected then
      return redis.call('EXISTS', tag .. 'profile') == 1 and -3 or 0
    end
  end
  if tonumber(redis.call('HGET', tag .. 'profile', 'v') or '0') ~= tonumber(expected) then
    return -1
  end
  return 0
end
local out = {}
for n, group in ipairs(groups) do
  local status = 0
  for _, entry in ipairs(group) do
    status = check(entry)
    if status ~= 0 then
      break
    end
  end
  if status == 0 then
    for _, entry in ipairs(group) do
      local tag = at(entry[2])
      if entry[1] == 'link' then
        redis.call('SET', tag .. 'alias', entry[3])
        if retention > 0 then
          redis.call('PEXPIRE', tag .. 'alias', retention)
        end
      end
      if entry[1] == 'retire' or entry[4] then
        redis.call('SET', tag .. 'hold', token, 'PX', hold_ms)
      end
    end
  end
  out[n] = status
end
return out
