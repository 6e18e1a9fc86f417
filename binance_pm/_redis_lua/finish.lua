-- A request's answer: its members expire one window from now, the outside weight the answer
-- reported is kept for a window, a 429 shuts a budget and a 418 bans the family.
-- KEYS: per budget its set, total, outside weight and shut-until keys (4 each), then the
-- family's ban key.
-- ARGV: budgets n, member, window ms, shut ms (429), ban ms (418), then per budget weight,
-- the used weight the answer reported (-1: none) and whether a 429 shuts it ('1' or '0').
local n = tonumber(ARGV[1])
local member = ARGV[2]
local window = tonumber(ARGV[3])
local shut_ms = tonumber(ARGV[4])
local ban_ms = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, n do
  local z, s, e, c = KEYS[4*i-3], KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i]
  local w = tonumber(ARGV[3 + 3*i])
  local reported = tonumber(ARGV[4 + 3*i])
  local shuts = ARGV[5 + 3*i] == '1'
  if w > 0 and redis.call('ZSCORE', z, member .. ':' .. w) then
    redis.call('ZADD', z, 'XX', now + window, member .. ':' .. w)
  end
  if reported >= 0 then
    local ours = tonumber(redis.call('GET', s) or '0')
    local outside = reported - ours
    if outside > 0 then
      if shuts then outside = math.max(outside, tonumber(redis.call('GET', e) or '0')) end
      redis.call('SET', e, outside, 'PX', window)
    end
  end
  if shuts and shut_ms > 0 then
    redis.call('SET', c, '1', 'PX', shut_ms)
  end
end
if ban_ms > 0 then redis.call('SET', KEYS[4 * n + 1], '1', 'PX', ban_ms) end
return 1
