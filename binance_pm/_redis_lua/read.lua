-- What the store holds now. Reads only: what has expired is left for the next charge to drop.
-- KEYS: per budget its set, outside weight and shut-until keys (3 each), then the pause key
-- and each family's ban key. ARGV: budgets n.
-- Returns per budget the weight held, the outside weight, ms until all it holds has expired
-- and ms it stays shut; then ms of pause; then ms of ban per family.
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, n do
  local held, last = 0, now
  local live = redis.call('ZRANGEBYSCORE', KEYS[3*i-2], '(' .. now, '+inf', 'WITHSCORES')
  for j = 1, #live, 2 do
    held = held + tonumber(string.match(live[j], ':(%d+)$'))
    last = math.max(last, tonumber(live[j + 1]))
  end
  table.insert(out, held)
  table.insert(out, tonumber(redis.call('GET', KEYS[3*i-1]) or '0'))
  table.insert(out, last - now)
  table.insert(out, math.max(0, redis.call('PTTL', KEYS[3*i])))
end
for j = 3*n + 1, #KEYS do table.insert(out, math.max(0, redis.call('PTTL', KEYS[j]))) end
return out
