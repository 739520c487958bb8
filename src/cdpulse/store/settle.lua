-- The last step of a Redis Cluster write (``store/links.py``), in one slot of the ids
-- its saves linked or retired outside their own: what ``write.lua`` does with them on one
-- Redis, for the saves that were written, and every hold of the write released.
-- ARGV[1]: [counter, head, token, retention ms (0: none), entries], an entry being
--   ["retire", id, version merged]: the merged profile deleted (and counted out) when
--       still at that version; its hold released
--   ["gone", customer, survivor, sorted sets, hashes]: a customer an admin merge retired:
--       its link and merge marker name the survivor; it leaves the sorted sets (its
--       schedules, the member lists of its segments) and hashes (its summary) named
--   ["move", id, customer merged, survivor]: an id linked to the merged customer is
--       linked to the survivor (every link stays one hop)
--   ["release", id]: the hold of a save that was not written released
-- An id's keys start with head .. id .. '}:' (``store/keys.py``); ``counter`` is the
-- shard's profile count; the other keys come named in the entries. Returns how many
-- retired profiles had moved since they were merged, and were kept (only a write after
-- the hold expired can move one).
local request = cmsgpack.unpack(ARGV[1])
local counter, head, token = request[1], request[2], request[3]
local retention, entries = tonumber(request[4]), request[5]
local function at(id)
  return head .. id .. '}:'
end
local function link(key, target)
  redis.call('SET', key, target)
  if retention > 0 then
    redis.call('PEXPIRE', key, retention)
  end
end
local moved = 0
for _, entry in ipairs(entries) do
  local kind, id = entry[1], entry[2]
  local tag = at(id)
  if kind == 'retire' then
    local version = tonumber(redis.call('HGET', tag .. 'profile', 'v') or '0')
    if version == tonumber(entry[3]) then
      if redis.call('DEL', tag .. 'profile') == 1 then
        redis.call('DECR', counter)
      end
    elseif version > 0 then
      moved = moved + 1
    end
  elseif kind == 'gone' then
    link(tag .. 'alias', entry[3])
    link(tag .. 'merged', entry[3])
    for _, key in ipairs(entry[4]) do
      redis.call('ZREM', key, id)
    end
    for _, key in ipairs(entry[5]) do
      redis.call('HDEL', key, id)
    end
  elseif kind == 'move' then
    for _, key in ipairs({tag .. 'alias', tag .. 'merged'}) do
      if redis.call('GET', key) == entry[3] then
        link(key, entry[4])
      end
    end
  end
  if kind == 'retire' or kind == 'release' then
    if redis.call('GET', tag .. 'hold') == token then
      redis.call('DEL', tag .. 'hold')
    end
  end
end
return moved
