-- LDoc takes one module or class per file, and lua/trigger/streams.lua holds the module
-- trigger.streams and its class Stream. make doc (and make lint's types check) run this first:
--
--   lua5.4 tools/doc/split.lua lua/trigger/streams.lua build/doc-src
--
-- writes OUT/streams.lua (the file with the class's lines blank) and OUT/Stream.lua (only the
-- class's lines), so that config.ld can list both and LDoc's warnings keep the source's line
-- numbers. The class runs from the doc comment holding `@classmod NAME` to the plain comment
-- line "-- (end of the NAME class".
local src, out = arg[1], arg[2]
if not src or not out then
  io.stderr:write("usage: tools/doc/split.lua FILE OUTDIR\n")
  os.exit(2)
end

local lines = {}
for line in io.lines(src) do lines[#lines + 1] = line end

local at, name
for i, line in ipairs(lines) do
  name = line:match("^%-%-%s*@classmod%s+([%w_]+)")
  if name then at = i break end
end
if not at then
  io.stderr:write(src, ": no @classmod line\n")
  os.exit(1)
end
local first = at
while first > 1 and lines[first]:match("^%-%-") and not lines[first]:match("^%-%-%-") do
  first = first - 1
end
local last
for i = at + 1, #lines do
  if lines[i]:match("^%-%- %(end of the " .. name .. " class") then last = i - 1 break end
end
if not last or not lines[first]:match("^%-%-%-") then
  io.stderr:write(src, ": the ", name, " class needs a doc comment opening with --- and a line ",
    "'-- (end of the ", name, " class' after it\n")
  os.exit(1)
end

assert(os.execute("mkdir -p '" .. out .. "'"))
local function write(path, keep)
  local f = assert(io.open(path, "wb"))
  for i, line in ipairs(lines) do
    f:write(keep(i) and line or "", "\n")
  end
  f:close()
end
local base = src:match("([^/]+)$")
write(out .. "/" .. base, function(i) return i < first or i > last end)
write(out .. "/" .. name .. ".lua", function(i) return i >= first and i <= last end)
