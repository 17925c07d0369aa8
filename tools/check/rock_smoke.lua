-- One Lua's half of make test-rock (tools/check/rock.sh): run by the interpreter under test
-- (luajit for 5.1, lua5.3, lua5.4) with LUA_PATH/LUA_CPATH from `luarocks path --tree TREE`.
--
--   INTERP tools/check/rock_smoke.lua LABEL TREE VERSION URL
--
-- Prints TAP lines without numbers ("ok - …" / "not ok - …"): the library and its C core come
-- from TREE, _VERSION is VERSION, lua-cjson is found (the distribution's: installed with
-- --deps-mode=none), and a tag subscription against the local server at URL hands out a run of
-- the demo scenario (user:1234) within 60 s.
local label, tree, version, url = arg[1], arg[2], arg[3], arg[4]

local function check(ok, what, detail)
  print((ok and "ok - " or "not ok - ") .. label .. ": " .. what)
  if not ok and detail ~= nil then print("#   " .. tostring(detail):gsub("\n", "\n#   ")) end
  return ok
end

local function from_tree(name, path)
  local file = package.searchpath(name, path)
  return file ~= nil and file:sub(1, #tree + 1) == tree .. "/", file
end

local ok, trigger = pcall(require, "trigger")
if not check(ok, "require \"trigger\"", trigger) then return end
local core_ok, core = pcall(require, "trigger.core")
if not check(core_ok and type(core) == "table", "require \"trigger.core\" (the C core)", core) then
  return
end
local lua_ok, lua_file = from_tree("trigger", package.path)
local c_ok, c_file = from_tree("trigger.core", package.cpath)
check(lua_ok and c_ok, "trigger and trigger.core come from the tree",
  tostring(lua_file) .. ", " .. tostring(c_file))
check(trigger._VERSION == version, "trigger._VERSION is " .. version, trigger._VERSION)
check(pcall(require, "cjson"), "lua-cjson is found (the distribution's, --deps-mode=none)")

local got, err = pcall(function()
  trigger.configure { access_token = "tr_dev_local_emulator_secret_key", base_url = url,
    timeout = 60 }
  local sub = trigger.runs.subscribe_to_tag("user:1234")
  local run = sub:next(60)
  sub:close()
  return run
end)
local run = got and err or nil
local tagged = false
for _, t in ipairs(run and run.tags or {}) do tagged = tagged or t == "user:1234" end
check(run ~= nil and type(run.id) == "string" and tagged,
  "subscribe_to_tag(\"user:1234\") hands out a run of the local server",
  got and ("no run: " .. tostring(err)) or err)
