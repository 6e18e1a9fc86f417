-- A fleet member says it is alive; the members alive, on Redis's own clock.
-- KEYS: the fleet's members (a sorted set scored by each one's last beat, in ms).
-- ARGV: the member, its lease TTL in ms. Returns the members alive, then the time in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 4)
local alive = redis.call('ZRANGE', KEYS[1], 0, -1)
alive[#alive + 1] = tostring(now)
return alive
