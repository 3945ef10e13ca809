-- A recovery's snapshot, run whole by Redis: see `SNAPSHOT` in redis.rs for its keys,
-- arguments and reply.
local epoch = redis.call('GET', KEYS[1])
if not epoch then epoch = ARGV[1]; redis.call('SET', KEYS[1], epoch) end
local t = redis.call('TIME')
local out = {epoch, '', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
local count = tonumber(ARGV[3])
for i = 4, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    out[#out + 1] = {0}
  else
    local page = redis.call('XRANGE', KEYS[i], '(' .. ARGV[i], '+', 'COUNT', count)
    local last = ''
    if #page == count then last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)[1][1] end
    out[#out + 1] = {1, page, last}
  end
end
local prev = redis.call('GET', KEYS[2]) or '0-0'
local tick = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*',
  'v', prev, 'e', epoch, 'n', '', 'r', '', 'x', '', 'p', '{}')
redis.call('SET', KEYS[2], tick)
out[2] = tick
return out
