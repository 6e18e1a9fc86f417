-- A fleet member keeps the leases it should hold, takes those free, lets go of those it
-- should not hold, and reads who holds each of the others.
-- KEYS: the lease of each account it should hold, then of each it should let go of, then the
-- rest of the fleet's accounts.
-- ARGV: the member, the lease TTL in ms, how many of KEYS it should hold, how many it should
-- let go of. Returns each lease's holder after that, in KEYS' order ("" for none), then the ms
-- until the first lease it should hold, but another holds, runs out (-1 when none).
local member, ttl = ARGV[1], tonumber(ARGV[2])
local hold, release = tonumber(ARGV[3]), tonumber(ARGV[4])
local holders, soonest = {}, -1
for i = 1, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if i <= hold then
    if holder == member then
      redis.call('PEXPIRE', KEYS[i], ttl)
    elseif not holder then
      redis.call('SET', KEYS[i], member, 'PX', ttl)
      holder = member
    else
      local left = redis.call('PTTL', KEYS[i])
      if left >= 0 and (soonest < 0 or left < soonest) then soonest = left end
    end
  elseif i <= hold + release and holder == member then
    redis.call('DEL', KEYS[i])
    holder = false
  end
  holders[i] = holder or ''
end
holders[#holders + 1] = tostring(soonest)
return holders
