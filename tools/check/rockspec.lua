-- Keeps the library's rockspecs true to the tree (make lint, item "rockspec"): LuaRocks' builtin
-- backend needs every module named, so a file added to lua/ or csrc/ must be added there too.
--
--   lua5.4 tools/check/rockspec.lua CORE_SRC CURL_SRC
--
-- CORE_SRC and CURL_SRC are the Makefile's lists (mk/rock.mk passes them). Checks, for every
-- rockspec/trigger-realtime-*.rockspec:
--   - each lua/**/*.lua file is a module of build.modules under its require name
--     (lua/trigger/x/init.lua is trigger.x), and each Lua module names a file that exists;
--   - trigger.core's sources are CORE_SRC and trigger.curl's are CURL_SRC, in any order;
--   - no -Werror (nor any other flag) reaches the user's compiler through the rockspec;
--   - every rockspec has the same build, dependencies and external_dependencies tables as
--     the scm one (a release rockspec differs only in version and source.tag).
-- Prints one line per problem, naming the rockspec and the entry to add or remove.
local core_src, curl_src = arg[1], arg[2]
if not core_src or not curl_src then
  io.stderr:write("usage: tools/check/rockspec.lua 'CORE_SRC' 'CURL_SRC'\n")
  os.exit(2)
end

local problems = 0
local function problem(fmt, ...)
  problems = problems + 1
  print(string.format(fmt, ...))
end

local function words(s)
  local set, n = {}, 0
  for w in s:gmatch("%S+") do
    if not set[w] then set[w] = true; n = n + 1 end
  end
  return set, n
end

local function load_rockspec(path)
  local env = {}
  local chunk = assert(loadfile(path, "t", env))
  chunk()
  return env
end

local function lines(cmd)
  local list = {}
  local p = assert(io.popen(cmd))
  for line in p:lines() do list[#list + 1] = line end
  p:close()
  return list
end

-- Deep comparison; returns the path of the first difference, or nil.
local function differ(a, b, where)
  if type(a) ~= type(b) then return where end
  if type(a) ~= "table" then return a ~= b and where or nil end
  for k, v in pairs(a) do
    local d = differ(v, b[k], where .. "." .. tostring(k))
    if d then return d end
  end
  for k in pairs(b) do
    if a[k] == nil then return where .. "." .. tostring(k) end
  end
  return nil
end

-- The Lua modules of the tree: lua/a/b.lua is a.b, lua/a/b/init.lua is a.b.
local lua_files = {}
for _, file in ipairs(lines("cd lua && find . -name '*.lua' | sort")) do
  local rel = file:gsub("^%./", "")
  local name = rel:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  lua_files[name] = "lua/" .. rel
end

local specs = lines("ls rockspec/trigger-realtime-*.rockspec | grep -v -- -server-")
if #specs == 0 then problem("no rockspec/trigger-realtime-*.rockspec") end
local scm_path = "rockspec/trigger-realtime-scm-1.rockspec"
local scm = load_rockspec(scm_path)

for _, path in ipairs(specs) do
  local spec = load_rockspec(path)
  local build = spec.build or {}
  local modules = build.modules or {}
  if build.type ~= "builtin" then
    problem("%s: build.type is %s, want \"builtin\" (LuaRocks compiles and installs it)",
      path, tostring(build.type))
  end
  for name, file in pairs(lua_files) do
    if modules[name] == nil then
      problem('%s: build.modules lacks ["%s"] = "%s"', path, name, file)
    elseif modules[name] ~= file then
      problem('%s: build.modules["%s"] is %s, want "%s"', path, name, tostring(modules[name]), file)
    end
  end
  for name, file in pairs(modules) do
    if type(file) == "string" and not lua_files[name] then
      problem('%s: build.modules["%s"] = "%s": no such file under lua/ (remove the entry)',
        path, name, file)
    end
  end
  for module, list in pairs({ ["trigger.core"] = core_src, ["trigger.curl"] = curl_src }) do
    local want = words(list)
    local info = modules[module]
    if type(info) ~= "table" then
      problem('%s: build.modules["%s"] is not a table of C sources', path, module)
    else
      local have, nhave = words(table.concat(info.sources or {}, " "))
      for src in pairs(want) do
        if not have[src] then problem('%s: %s.sources lacks "%s" (in the Makefile)', path, module, src) end
      end
      for src in pairs(have) do
        if not want[src] then problem('%s: %s.sources has "%s", not in the Makefile', path, module, src) end
      end
      if nhave ~= #(info.sources or {}) then problem("%s: %s.sources lists a file twice", path, module) end
      if info.defines or info.cflags then
        problem("%s: %s sets defines/cflags: the user's compiler gets LuaRocks' CFLAGS only", path, module)
      end
    end
  end
  local text = assert(io.open(path, "rb")):read("*a")
  local code = text:gsub("%-%-[^\n]*", "") -- comments may name it
  if code:find("-Werror", 1, true) then
    problem("%s: -Werror must not reach a user's compiler (keep it in the Makefile)", path)
  end
  if path ~= scm_path then
    for _, key in ipairs({ "build", "dependencies", "external_dependencies", "description" }) do
      local d = differ(scm[key], spec[key], key)
      if d then problem("%s: %s differs from %s (at %s)", path, key, scm_path, d) end
    end
  end
end

print(string.format("rockspec: %d rockspec(s), %d Lua modules, %d problem(s)", #specs,
  (function() local n = 0; for _ in pairs(lua_files) do n = n + 1 end; return n end)(), problems))
os.exit(problems == 0 and 0 or 1)
