-- Live burst, bare baseline: bench/burst_client.lua's protocol (READY, then one ROUND line per
-- round) by a hand-written luasocket long-poll (one keep-alive connection) and plain cjson of
-- each body and of every changed row's metadata; rows kept by key. Both dialects: up to date is
-- the electric-up-to-date header or an up-to-date control message at the end of the body.
-- usage: lua5.4 bench/burst_bare.lua PORT TAG N ROUNDS
local cjson = require "cjson"
local util = require "util"
local http = require "http_min"
local port, tag, n, rounds = tonumber(arg[1]), arg[2], tonumber(arg[3]), tonumber(arg[4])

local headers = http.REALTIME_HEADERS
local path = http.tag_path(tag)
local conn = http.connect("127.0.0.1", port)
local handle, offset, cursor, live = nil, "-1", "", false
local rows, count, round, first = {}, 0, 0, nil
local cpu0 = os.clock()
while round <= rounds do
  local q = path .. "&offset=" .. offset .. (handle and ("&handle=" .. handle) or "")
  if live then q = q .. "&live=true&cursor=" .. cursor end
  local status, h, body = conn:request("GET", q, nil, headers)
  assert(status == 200, body)
  handle, offset = h["electric-handle"] or handle, h["electric-offset"] or offset
  cursor = h["electric-cursor"] or cursor
  local up_to_date = h["electric-up-to-date"] ~= nil
  for _, m in ipairs(cjson.decode(body)) do
    local v = m.value
    if v then
      local row = rows[m.key]
      if row then for k, x in pairs(v) do row[k] = x end else rows[m.key] = v end
      local now = util.now()
      if round == 0 then
        count = count + 1
      elseif v.metadata and v.metadata ~= cjson.null then
        local meta = cjson.decode(v.metadata)
        if meta.round == round then
          count = count + 1
          first = first or now - meta.t
          if count == n then
            io.stdout:write(("ROUND %d %.6f %.6f\n"):format(round, now - meta.t, first))
            io.stdout:flush()
            round, count, first = round + 1, 0, nil
          end
        end
      end
    elseif m.headers and m.headers.control == "up-to-date" then
      up_to_date = true
    end
  end
  if up_to_date then
    live = true
    if round == 0 and count >= n then
      io.stdout:write("READY\n")
      io.stdout:flush()
      round, count = 1, 0
    end
  end
end
conn:close()
util.emit { cpu = os.clock() - cpu0, hwm_kb = util.status_kb("VmHWM") }
