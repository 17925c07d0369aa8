-- The bare throughput baseline, decode half: the response bodies curl fetched (one file each,
-- in request order), decoded with plain cjson.decode — the envelope, then each packet
-- (payload, output, metadata) of every row. Rows are kept by key as any shape client must
-- (to merge later partial updates); decoded packets are dropped.
-- usage: lua5.4 bench/sync_bare.lua FILE...   or   lua5.4 bench/sync_bare.lua @LIST (one path a line)
local cjson = require "cjson"
local util = require "util"

local decode = cjson.decode
local files = {}
for i = 1, #arg do
  if arg[i]:sub(1, 1) == "@" then
    for line in io.lines(arg[i]:sub(2)) do files[#files + 1] = line end
  else
    files[#files + 1] = arg[i]
  end
end

collectgarbage()
local cpu0, t0 = os.clock(), util.now()
local rows, count = {}, 0
for _, path in ipairs(files) do
  local f = assert(io.open(path, "rb"))
  local body = f:read("a")
  f:close()
  local messages = decode(body)
  for _, m in ipairs(messages) do
    local v = m.value
    if v then
      rows[m.key] = v
      count = count + 1
      if v.payload ~= cjson.null then decode(v.payload) end
      if v.output ~= cjson.null then decode(v.output) end
      if v.metadata ~= cjson.null then decode(v.metadata) end
    end
  end
end
local t1, cpu1 = util.now(), os.clock()
util.emit { seconds = t1 - t0, cpu = cpu1 - cpu0, hwm_kb = util.status_kb("VmHWM"), runs = count,
  kept = next(rows) ~= nil }
