-- Read a chunk of a batch's profiles and links in one command.
-- ARGV[1]: [prefix, ids] as MessagePack. Returns alias, version, blob for each id, in order.
-- Keys are named here from the prefix (as ``store/keys.py`` names them): one Redis node.
local request = cmsgpack.unpack(ARGV[1])
local prefix, ids = request[1], request[2]
local out = {}
for _, id in ipairs(ids) do
  local tag = prefix .. ':{' .. id .. '}:'
  local row = redis.call('HMGET', tag .. 'profile', 'v', 'b')
  out[#out + 1] = redis.call('GET', tag .. 'alias')
  out[#out + 1] = row[1]
  out[#out + 1] = row[2]
end
return out
