-- The history's append, run whole by Redis on one partition: see `APPEND` in redis.rs
-- for its keys, arguments and reply.
local done = redis.call('GET', KEYS[4])
if done then return cjson.decode(done) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[6] ~= '' and now > tonumber(ARGV[6]) then return {'late', tostring(now)} end
if ARGV[8] ~= '' then
  redis.call('SET', KEYS[6], ARGV[8], 'PX', math.floor(tonumber(ARGV[7]) / 2))
  redis.call('ZADD', KEYS[5], now, ARGV[9])
end
local epoch = redis.call('GET', KEYS[1])
if not epoch then epoch = ARGV[1]; redis.call('SET', KEYS[1], epoch) end
local on = ARGV[2] == '1'
local prev = redis.call('GET', KEYS[2]) or '0-0'
local appended = false
local out = {epoch, tostring(now)}
local k = 7
for a = 10, #ARGV, 9 do
  local rooms = tonumber(ARGV[a + 4])
  local keyed = ARGV[a + 5] == '1'
  local idem = KEYS[k + 2 * rooms]
  local seen = keyed and redis.call('GET', idem)
  if seen then
    out[#out + 1] = 'r'; out[#out + 1] = seen
  else
    local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*',
      'v', prev, 'e', epoch, 'n', ARGV[a], 'r', ARGV[a + 1], 'x', ARGV[a + 2], 'p', ARGV[a + 3], 'a', ARGV[a + 8])
    if keyed then redis.call('SET', idem, id .. '\n' .. ARGV[a + 6], 'PX', ARGV[a + 7]) end
    prev = id
    appended = true
    if on then
      local cutoff = tonumber(string.match(id, '^(%d+)')) - tonumber(ARGV[4])
      for i = k, k + rooms - 1 do
        local last = KEYS[i + rooms]
        local rp = redis.call('GET', last) or '0-0'
        redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[3], id,
          'v', rp, 'n', ARGV[a], 'r', ARGV[a + 1], 'p', ARGV[a + 3], 'a', ARGV[a + 8])
        if cutoff > 0 then redis.call('XTRIM', KEYS[i], 'MINID', '~', cutoff) end
        redis.call('PEXPIRE', KEYS[i], ARGV[4])
        redis.call('SET', last, id, 'PX', ARGV[4])
      end
    end
    out[#out + 1] = 'a'; out[#out + 1] = id
  end
  k = k + 2 * rooms + (keyed and 1 or 0)
end
if appended then redis.call('SET', KEYS[2], prev) end
redis.call('SET', KEYS[4], cjson.encode(out), 'PX', ARGV[7])
return out
