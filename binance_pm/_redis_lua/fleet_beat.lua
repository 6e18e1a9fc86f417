-- A fleet member says it is alive; the members alive, on Redis's own clock.
-- KEYS: the fleet's members (a sorted set scored by each one's last beat, in ms).
-- ARGV: the member, its lease TTL in ms.
-- Returns the members alive, then the ms until the next other member would fall silent for a
-- whole TTL (-1 when there is no other).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 4)
local alive = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local members, soonest = {}, -1
for i = 1, #alive, 2 do
  members[#members + 1] = alive[i]
  if alive[i] ~= ARGV[1] then
    local left = tonumber(alive[i + 1]) + ttl - now
    if soonest < 0 or left < soonest then soonest = left end
  end
end
members[#members + 1] = tostring(soonest)
return members
