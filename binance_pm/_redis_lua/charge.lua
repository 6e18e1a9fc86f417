-- Charge every budget a call needs, or none, on Redis's clock.
-- KEYS: per budget its set, total, outside weight, shut-until and claim keys (5 each), then
-- the marker, the pause key and the family's ban key.
-- ARGV: budgets n, member, hold ms, claim ms, the marker this process last saw ('' for none),
-- a new marker, the pause ms a loss calls for, the marker's lifetime ms, then per budget
-- weight and limit.
-- Returns {1 charged | 0, wait ms, the marker, why it waits: 0 room, 1 a 429 or 418,
-- 2 a pause after lost counts, 3 the same, found lost by this call}.
local n = tonumber(ARGV[1])
local member = ARGV[2]
local hold = tonumber(ARGV[3])
local claim_ms = tonumber(ARGV[4])
local known = ARGV[5]
local pause_ms = tonumber(ARGV[7])
local marker, pause, ban = KEYS[5*n+1], KEYS[5*n+2], KEYS[5*n+3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('GET', marker)
local lost = false
if epoch then
  lost = known ~= '' and epoch ~= known
else
  epoch = ARGV[6]
  redis.call('SET', marker, epoch)
  lost = known ~= ''
end
redis.call('PEXPIRE', marker, tonumber(ARGV[8]))
if lost and redis.call('PTTL', pause) < pause_ms then
  redis.call('SET', pause, '1', 'PX', pause_ms)
end
local paused = redis.call('PTTL', pause)
if paused > 0 then return {0, paused, epoch, lost and 3 or 2} end
local banned = redis.call('PTTL', ban)
if banned > 0 then return {0, banned, epoch, 1} end
local wait = 0
local shut_wait = 0
for i = 1, n do
  local z, s, e, c, k = KEYS[5*i-4], KEYS[5*i-3], KEYS[5*i-2], KEYS[5*i-1], KEYS[5*i]
  local w = tonumber(ARGV[7 + 2*i])
  local limit = tonumber(ARGV[8 + 2*i])
  local shut = redis.call('PTTL', c)
  if shut > 0 then shut_wait = math.max(shut_wait, shut) end
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #gone > 0 then
    local freed = 0
    for _, m in ipairs(gone) do freed = freed + tonumber(string.match(m, ':(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    redis.call('DECRBY', s, freed)
  end
  local used = tonumber(redis.call('GET', s) or '0') + tonumber(redis.call('GET', e) or '0')
  local claim = redis.call('GET', k)
  if claim then
    local who, cw = string.match(claim, '^(.*):(%d+)$')
    if who ~= member then used = used + tonumber(cw) end
  end
  if used + w > limit then
    local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    local room_in = 50
    if #first > 0 then room_in = math.max(1, math.min(tonumber(first[2]) - now, 50)) end
    wait = math.max(wait, room_in)
    if not claim then redis.call('SET', k, member .. ':' .. w, 'PX', claim_ms) end
  end
end
if shut_wait >= wait and shut_wait > 0 then return {0, shut_wait, epoch, 1} end
if wait > 0 then return {0, wait, epoch, 0} end
for i = 1, n do
  local z, s, k = KEYS[5*i-4], KEYS[5*i-3], KEYS[5*i]
  local w = tonumber(ARGV[7 + 2*i])
  redis.call('ZADD', z, now + hold, member .. ':' .. w)
  redis.call('INCRBY', s, w)
  redis.call('PEXPIRE', z, hold)
  redis.call('PEXPIRE', s, hold)
  local claim = redis.call('GET', k)
  if claim and string.match(claim, '^(.*):%d+$') == member then redis.call('DEL', k) end
end
return {1, 0, epoch, 0}
