-- A request that never left: give its weight back.
-- KEYS: per budget its set and total. ARGV: budgets n, member, then per budget its weight.
local n = tonumber(ARGV[1])
for i = 1, n do
  local w = tonumber(ARGV[2 + i])
  if redis.call('ZREM', KEYS[2*i-1], ARGV[2] .. ':' .. w) == 1 then
    redis.call('DECRBY', KEYS[2*i], w)
  end
end
return 1
