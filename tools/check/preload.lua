-- Loaded with `lua5.4 -e "TRIGGER_CHECK_BUILD='build/asan'; dofile'tools/check/preload.lua'" ...`
-- before busted or a check script: puts lua/ and the chosen build directory first on the
-- search paths and loads trigger.core and trigger.curl from there at once. Later requires get
-- these cached modules, so spec/helper.lua (which puts build/5.4 first) cannot swap in another
-- build. Fails loudly when the modules mapped into the process are not the ones asked for.
local dir = assert(rawget(_G, "TRIGGER_CHECK_BUILD"), "set TRIGGER_CHECK_BUILD first")
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = dir .. "/?.so;" .. package.cpath
for _, name in ipairs { "trigger.core", "trigger.curl" } do
  local file = package.searchpath(name, dir .. "/?.so")
  if not file then error("preload: " .. name .. " is not built in " .. dir, 0) end
  require(name)
end
-- Where the modules really came from (a plain build cannot be mistaken for the sanitized one).
local maps = io.open("/proc/self/maps")
if maps then
  local text = maps:read("a")
  maps:close()
  local want = dir:gsub("%p", "%%%0")
  for _, so in ipairs { "core", "curl" } do
    if not text:find(want .. "/trigger/" .. so .. "%.so") then
      error("preload: " .. dir .. "/trigger/" .. so .. ".so is not mapped into the process", 0)
    end
  end
end
-- With TRIGGER_CHECK_PIN (a checkpin.so built from tools/check/pin.c) the modules stay mapped
-- after lua_close, so LeakSanitizer can name their frames at exit.
local pin_so = rawget(_G, "TRIGGER_CHECK_PIN")
if pin_so then
  local pin = assert(package.loadlib(pin_so, "luaopen_checkpin"))()
  for _, name in ipairs { "trigger.core", "trigger.curl" } do
    pin(package.searchpath(name, dir .. "/?.so"))
  end
end
TRIGGER_CHECK_BUILD, TRIGGER_CHECK_PIN = nil, nil
