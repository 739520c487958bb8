-- Save a chunk of a batch's profiles, each with everything that changes with it, or nothing:
-- a compare-and-set per profile. The whole chunk travels as one MessagePack argument, so
-- the client packs one command per chunk instead of one per key and value (redis-py packs
-- arguments one by one in Python), and Redis parses one.
--
-- ARGV[1]: [prefix, retention ms (0: none), saves], a save being
--   [id, version read, visitors to link, operations, customer, customers merged]
-- (``customer``: the profile is a known customer's, whose own link, if any, is removed:
-- ``pipeline/identity.py``; any other save of a linked id is refused, and so is a
-- customer's once an admin merge merged it: its ``merged`` marker stands.
-- ``customers merged``: [[customer, [ids linked to it]]] of an admin merge, each also
-- retired by a "del" operation: its link and marker name this save's id, and the ids
-- linked to it move here, so every link stays one hop)
-- ARGV[1 + n]: the n-th save's encoded profile (Redis' MessagePack has no binary type).
-- and an operation one of
--   ["zadd", key, score, member]  ["zrem", key, member]  ["hset", key, field, value]
--   ["hdel", key, field]
--   ["set", key, value] (expires with the retention)  ["setnx", key, value] (likewise)
--   ["del", key, version] (a merged visitor's profile: refused unless still at the version
--       merged, as a write to it since would be lost; deleted, the counter goes down)
--   ["convert", converted hash, counts hash, customer, variant]: HSETNX, and if new
--       HINCRBY counts "conversions:<variant>"
--   ["claim", earlier claim key, counts hash, ttl seconds, field, claim]: the claim joins
--       the customer's claims (``claim``), and if new HINCRBY
--   ["identity", identity key, pseudonym]: the index entry points at the customer, and the
--       pseudonym joins the customer's identities (a hash; leaving its previous owner's)
--   ["kpi", counters hash, cap, [field, amount, ...]]: added to the hash's counters
--       (``store/kpis.py``). The amounts of the chunk's written saves are summed here and
--       each counter is moved once at the end (one HINCRBY per field and hash, not per
--       save); a hash holding ``cap`` fields before that takes no new one, and counts
--       each it refused in "_refused"
-- Returns, per save, the new version, -1 when the version (or a merged visitor's) moved,
-- -2 when the id is now someone's visitor, -3 when a visitor to link belongs to someone
-- else or has a profile the save does not merge. A save's
-- conditions are checked before anything of it is written: a refused save changes nothing.
--
-- On a Redis Cluster (ARGV[1]'s 4th item, [shared, head, token]) a call holds the saves of
-- one shard, and every key it touches is on the shard's slot: a save there carries no
-- links, "del" or merged customers and no identity entry of its own (other slots:
-- ``store/links.py`` writes them before and after), and one whose id another write holds
-- (``token`` names this write's holds) is refused as moved (-1).
local batch = cmsgpack.unpack(ARGV[1])
local prefix, retention, saves = batch[1], tonumber(batch[2]), batch[3]
-- Where keys are (``store/keys.py``), in this one place: an id's keys start with at(id);
-- a shared structure this script names itself starts with ``shared .. ':'`` (summed
-- over every shard by its readers). One Redis: {prefix}:{<id>}: and {prefix}:; a Redis
-- Cluster: {prefix}:{<tag>}{<id>}: and {prefix}:{<tag>}:. Keys in the operations are
-- named by the caller, already in the save's shard.
local shard = batch[4]
local shared = shard and shard[1] or prefix
local head = shard and shard[2] or (prefix .. ':{')
local token = shard and shard[3]
local function at(id)
  return head .. id .. '}:'
end
local counter = shared .. ':profiles'
-- A customer's claims are one hash, claim -> when it lapses (epoch ms, Redis' clock): a
-- claim not lapsed is not counted again. The hash lives as long as its newest claim, and
-- the lapsed ones are dropped when the customer next claims (``lapse``, once per save).
-- An earlier version kept a key per claim (``earlier``, listed for erasure): one still
-- standing counts as claimed, so a batch decided again across an upgrade counts nothing
-- twice.
local now
local function clock()
  if now == nil then
    local time = redis.call('TIME')
    now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  end
  return now
end
local function lapse(claimed)
  local entries = redis.call('HGETALL', claimed)
  for i = 1, #entries, 2 do
    if tonumber(entries[i + 1]) <= clock() then
      redis.call('HDEL', claimed, entries[i])
    end
  end
end
local function claim(claimed, earlier, id, ttl_ms)
  if tonumber(redis.call('HGET', claimed, id) or '0') > clock() then
    return false
  end
  if redis.call('EXISTS', earlier) == 1 then
    return false
  end
  redis.call('HSET', claimed, id, string.format('%d', clock() + ttl_ms))
  if redis.call('PTTL', claimed) < ttl_ms then
    redis.call('PEXPIRE', claimed, ttl_ms)
  end
  return true
end
local function expire(key)
  if retention > 0 then
    redis.call('PEXPIRE', key, retention)
  end
end
-- A customer's identities are a hash of pseudonym -> '', each pseudonym without its
-- 'hmac:' (``field``; ``store/identities.py``): 64 bytes, the longest field a hash keeps
-- in a listpack (hash-max-listpack-value), where a whole one made every customer's hash
-- a hash table (and a small set of strings is one on Redis 7.0). One an earlier version
-- wrote, a set or a hash of whole pseudonyms, is rewritten the first time it is written,
-- its time to live kept.
local function field(pseudonym)
  if string.sub(pseudonym, 1, 5) == 'hmac:' then
    return string.sub(pseudonym, 6)
  end
  return pseudonym
end
local function identities(key)
  local kind, members = redis.call('TYPE', key)['ok'], nil
  if kind == 'set' then
    members = redis.call('SMEMBERS', key)
  elseif kind == 'hash' then
    local found = redis.call('HKEYS', key)
    for _, member in ipairs(found) do
      if field(member) ~= member then
        members = found
        break
      end
    end
  end
  if members then
    local ttl = redis.call('PTTL', key)
    redis.call('DEL', key)
    for _, member in ipairs(members) do
      redis.call('HSET', key, field(member), '')
    end
    if ttl > 0 then
      redis.call('PEXPIRE', key, ttl)
    end
  end
  return key
end
-- Whether another write holds the id (a Redis Cluster's links, ``store/links.py``).
local function held(tag)
  local holder = redis.call('GET', tag .. 'hold')
  return holder and holder ~= token
end
local out = {}
local kpis, caps = {}, {}  -- hash -> field -> amount, of the saves written; hash -> cap
for n, save in ipairs(saves) do
  local id, expected, links, ops, customer = save[1], tonumber(save[2]), save[3], save[4], save[5]
  local merged = save[6] or {}
  local blob = ARGV[1 + n]
  local tag = at(id)
  local status
  if redis.call('EXISTS', tag .. (customer and 'merged' or 'alias')) == 1 then
    status = -2
  elseif token and held(tag) then
    status = -1
  else
    local version = tonumber(redis.call('HGET', tag .. 'profile', 'v') or '0')
    if version ~= expected then
      status = -1
    else
      local retiring = {}
      for _, op in ipairs(ops) do
        if op[1] == 'del' then
          retiring[op[2]] = true
        end
      end
      for _, visitor in ipairs(links) do
        local visitor_tag = at(visitor)
        local owner = redis.call('GET', visitor_tag .. 'alias')
        if owner and owner ~= id then
          status = -3
          break
        end
        -- A profile of its own the save does not merge: stored since the batch read (a
        -- customer's, which must not be linked, or a visitor's, to merge first).
        if not retiring[visitor_tag .. 'profile'] and redis.call('EXISTS', visitor_tag .. 'profile') == 1 then
          status = -3
          break
        end
      end
      if status == nil then
        for _, op in ipairs(ops) do
          if op[1] == 'del' then
            local merged = tonumber(redis.call('HGET', op[2], 'v') or '0')
            if merged ~= tonumber(op[3]) then
              status = -1
              break
            end
          end
        end
      end
      if status == nil then
        for _, visitor in ipairs(links) do
          local alias = at(visitor) .. 'alias'
          redis.call('SET', alias, id)
          expire(alias)
        end
        if customer then
          -- A customer's own link, made while it was only a visitor, no longer applies.
          redis.call('DEL', tag .. 'alias')
        end
        for _, gone in ipairs(merged) do
          local gone_id = gone[1]
          local gone_tag = at(gone_id)
          for _, key in ipairs({gone_tag .. 'alias', gone_tag .. 'merged'}) do
            redis.call('SET', key, id)
            expire(key)
          end
          for _, linked in ipairs(gone[2]) do
            local linked_tag = at(linked)
            for _, key in ipairs({linked_tag .. 'alias', linked_tag .. 'merged'}) do
              if redis.call('GET', key) == gone_id then
                redis.call('SET', key, id)
                expire(key)
              end
            end
          end
        end
        redis.call('HSET', tag .. 'profile', 'v', version + 1, 'b', blob)
        expire(tag .. 'profile')
        if version == 0 then
          redis.call('INCR', counter)
        end
        local claimed -- the customer's claims, once lapsed ones are dropped
        for _, op in ipairs(ops) do
          local name = op[1]
          if name == 'zadd' then
            redis.call('ZADD', op[2], op[3], op[4])
          elseif name == 'zrem' then
            redis.call('ZREM', op[2], op[3])
          elseif name == 'hset' then
            redis.call('HSET', op[2], op[3], op[4])
          elseif name == 'hdel' then
            redis.call('HDEL', op[2], op[3])
          elseif name == 'set' then
            redis.call('SET', op[2], op[3])
            expire(op[2])
          elseif name == 'setnx' then
            if redis.call('SET', op[2], op[3], 'NX') then
              expire(op[2])
            end
          elseif name == 'del' then
            if redis.call('DEL', op[2]) == 1 then
              redis.call('DECR', counter)
            end
          elseif name == 'convert' then
            if redis.call('HSETNX', op[2], op[4], op[5]) == 1 then
              redis.call('HINCRBY', op[3], 'conversions:' .. op[5], 1)
            end
          elseif name == 'claim' then
            if claimed == nil then
              claimed = tag .. 'claimed'
              lapse(claimed)
            end
            if claim(claimed, op[2], op[6], op[4] * 1000) then
              redis.call('HINCRBY', op[3], op[5], 1)
            end
          elseif name == 'identity' then
            -- The hash holds exactly the entries that point at the customer: an email
            -- another customer gives now is theirs, so it leaves its previous owner's.
            -- On a Redis Cluster the entry (false here) is on its pseudonym's slot: set
            -- apart, and a previous owner's hash keeps the pseudonym (erasure checks).
            if op[2] then
              local owner = redis.call('GET', op[2])
              if owner and owner ~= id then
                redis.call('HDEL', identities(at(owner) .. 'identities'), field(op[3]))
              end
              redis.call('SET', op[2], id)
              expire(op[2])
            end
            redis.call('HSET', identities(tag .. 'identities'), field(op[3]), '')
            expire(tag .. 'identities')
          elseif name == 'kpi' then
            local counters, counts = op[2], op[4]
            local sums = kpis[counters]
            if sums == nil then
              sums = {}
              kpis[counters] = sums
              caps[counters] = tonumber(op[3])
            end
            for i = 1, #counts, 2 do
              sums[counts[i]] = (sums[counts[i]] or 0) + counts[i + 1]
            end
          end
        end
        status = version + 1
      end
    end
  end
  out[n] = status
end
for counters, sums in pairs(kpis) do
  local full = redis.call('HLEN', counters) >= caps[counters]
  for field, amount in pairs(sums) do
    if full and redis.call('HEXISTS', counters, field) == 0 then
      redis.call('HINCRBY', counters, '_refused', 1)
    else
      redis.call('HINCRBY', counters, field, amount)
    end
  end
end
return out
