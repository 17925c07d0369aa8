-- Small helpers shared by the benchmark scripts (process stats, JSON lines, statistics).
local cjson = require "cjson"

local M = {}

--- A file's whole text, or nil when it cannot be opened.
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- A number from the environment (a bench knob), or `default`.
function M.env_num(name, default)
  return tonumber(os.getenv(name) or "") or default
end

-- CLOCK_MONOTONIC seconds: the same clock in every process of the machine (cqueues.monotime in
-- the server reads it too), so a time stamped by the server can be compared here.
do
  local ok, core = pcall(require, "trigger.core")
  if ok then
    M.now = core.monotonic
  else
    M.now = require("cqueues").monotime
  end
end

-- A field of /proc/<pid>/status in kB (VmRSS, VmHWM, ...).
function M.status_kb(field, pid)
  local text = M.read_file("/proc/" .. (pid or "self") .. "/status")
  if not text then return nil end
  return tonumber(text:match(field .. ":%s*(%d+)"))
end

local TICKS = 100 -- sysconf(_SC_CLK_TCK) on Linux

-- utime + stime of a process in seconds (10 ms resolution).
function M.cpu_seconds(pid)
  local text = M.read_file("/proc/" .. (pid or "self") .. "/stat")
  if not text then return nil end
  local rest = text:match("%) (.*)$")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  -- after "pid (comm) ": state is field 1, utime field 12, stime field 13
  return (tonumber(fields[12]) + tonumber(fields[13])) / TICKS
end

-- Every URL the library requests from now on, in order (the curl baselines replay them): a
-- list that grows as requests start.
function M.record_urls()
  local urls = {}
  local transport = require "trigger.transport.curl"
  local start = transport.start
  transport.start = function(req)
    urls[#urls + 1] = req.url
    return start(req)
  end
  return urls
end

-- Write recorded URLs one a line: the non-live ones to `path`, the live ones to `live_path`
-- (dropped when it is nil).
function M.write_urls(urls, path, live_path)
  local f = assert(io.open(path, "w"))
  local g = live_path and assert(io.open(live_path, "w"))
  for _, u in ipairs(urls) do
    if not u:find("live=true", 1, true) then
      f:write(u, "\n")
    elseif g then
      g:write(u, "\n")
    end
  end
  f:close()
  if g then g:close() end
end

-- One result line on stdout, read by bench/run.lua.
function M.emit(t)
  io.stdout:write("RESULT ", cjson.encode(t), "\n")
  io.stdout:flush()
end

function M.median(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

-- Nearest-rank percentile (p in 0..100).
function M.percentile(list, p)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  if #s == 0 then return nil end
  local k = math.max(1, math.ceil(p / 100 * #s))
  return s[k]
end

-- 1234567 -> "1,234,567"
function M.thousands(n)
  local s = tostring(math.tointeger(n) or n)
  repeat
    local k
    s, k = s:gsub("^(%d+)(%d%d%d)", "%1,%2")
  until k == 0
  return s
end

return M
