-- Read a chunk of a batch's profiles and links in one command.
-- ARGV[1]: [prefix, ids, known] as MessagePack; ``known`` holds, per id, the version the
-- worker keeps decoded in its cache (0: none). Returns alias, version, blob for each id,
-- in order; the blob is left out (false) when the version is the known one: the cached
-- profile is the stored one, and its bytes need not travel.
-- Keys are named here (as ``store/keys.py`` names them): an id's keys start with
-- head .. id .. '}:', {prefix}:{<id>}: on one Redis; on a Redis Cluster the request holds
-- the ids of one shard and its head (ARGV[1]'s 4th item): {prefix}:{<tag>}{<id>}:.
local request = cmsgpack.unpack(ARGV[1])
local prefix, ids, known = request[1], request[2], request[3]
local head = request[4] or (prefix .. ':{')
local out = {}
for i, id in ipairs(ids) do
  local tag = head .. id .. '}:'
  out[#out + 1] = redis.call('GET', tag .. 'alias')
  local have = known[i]
  if have > 0 then
    local version = redis.call('HGET', tag .. 'profile', 'v')
    out[#out + 1] = version
    if version and tonumber(version) == have then
      out[#out + 1] = false
    else
      out[#out + 1] = redis.call('HGET', tag .. 'profile', 'b')
    end
  else
    local row = redis.call('HMGET', tag .. 'profile', 'v', 'b')
    out[#out + 1] = row[1]
    out[#out + 1] = row[2]
  end
end
return out
