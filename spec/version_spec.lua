-- One version everywhere: trigger._VERSION is the released version; CHANGELOG.md's newest
-- release must be that version; every rockspec's `version` matches its file name, the scm-1
-- rockspec stays "scm-1", and a release rockspec (trigger-realtime-X.Y.Z-N.rockspec) names a
-- version the CHANGELOG has released, tagged vX.Y.Z. Also run by `make lint` (item "version").
-- Reads the files as text: it needs neither the C modules nor the local server.
local source = debug.getinfo(1, "S").source:gsub("^@", "")
local root = source:match("^(.*)/spec/version_spec%.lua$") or "."

local function read(path)
  local f = assert(io.open(root .. "/" .. path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function library_version()
  local v = read("lua/trigger/init.lua"):match('\nM%._VERSION%s*=%s*"([^"]+)"')
  assert(v, "lua/trigger/init.lua: no M._VERSION = \"...\" line")
  return v
end

-- Releases in CHANGELOG.md ("## [X.Y.Z] - YYYY-MM-DD"), newest first; "Unreleased" is skipped.
local function changelog_releases()
  local releases = {}
  for line in read("CHANGELOG.md"):gmatch("[^\n]+") do
    local v, date = line:match("^## %[([^%]]+)%] %- (%d%d%d%d%-%d%d%-%d%d)%s*$")
    if v then
      releases[#releases + 1] = { version = v, date = date }
    else
      assert(not line:match("^## ") or line:match("^## %[Unreleased%]"),
        "CHANGELOG.md: a release heading must read '## [X.Y.Z] - YYYY-MM-DD', got: " .. line)
    end
  end
  return releases
end

local function rockspecs()
  local list = {}
  local p = assert(io.popen("ls " .. root .. "/rockspec/*.rockspec 2>/dev/null"))
  for path in p:lines() do
    local env = {}
    local chunk = assert(loadfile(path, "t", env))
    if setfenv then setfenv(chunk, env) end -- Lua 5.1 ignores loadfile's env
    chunk()
    list[#list + 1] = { file = path:match("([^/]+)$"), spec = env }
  end
  p:close()
  return list
end

local function semver(v)
  local a, b, c = v:match("^(%d+)%.(%d+)%.(%d+)$")
  return a and { tonumber(a), tonumber(b), tonumber(c) }
end

describe("version", function()
  it("trigger._VERSION is a release version X.Y.Z", function()
    assert.is_truthy(semver(library_version()), library_version())
  end)

  it("is the newest release in CHANGELOG.md", function()
    local releases = changelog_releases()
    assert.is_true(#releases > 0, "CHANGELOG.md has no release")
    assert.are.equal(library_version(), releases[1].version)
    -- newest first, each version once, dates never going forward
    for i = 2, #releases do
      local newer, older = semver(releases[i - 1].version), semver(releases[i].version)
      assert.is_truthy(newer and older, "not X.Y.Z: " .. releases[i].version)
      local cmp = 0
      for k = 1, 3 do
        if cmp == 0 and newer[k] ~= older[k] then cmp = newer[k] > older[k] and 1 or -1 end
      end
      assert.are.equal(1, cmp, releases[i - 1].version .. " listed above " .. releases[i].version)
      assert.is_true(releases[i - 1].date >= releases[i].date, "dates out of order")
    end
  end)

  it("every rockspec agrees with its file name, the CHANGELOG and _VERSION", function()
    local released = {}
    for _, r in ipairs(changelog_releases()) do released[r.version] = true end
    local list = rockspecs()
    assert.is_true(#list > 0, "no rockspec/*.rockspec")
    local has_scm = false
    for _, r in ipairs(list) do
      local s = r.spec
      assert.is_truthy(s.package == "trigger-realtime" or s.package == "trigger-realtime-server",
        r.file .. ": package " .. tostring(s.package))
      assert.are.equal(s.package .. "-" .. s.version .. ".rockspec", r.file)
      if s.version == "scm-1" then
        has_scm = true
      else
        local v = s.version:match("^(%d+%.%d+%.%d+)%-%d+$")
        assert.is_truthy(v, r.file .. ": version must be X.Y.Z-N or scm-1")
        assert.is_true(released[v] == true, r.file .. ": " .. v .. " is not released in CHANGELOG.md")
        assert.are.equal("v" .. v, s.source and s.source.tag, r.file .. ": source.tag")
      end
    end
    assert.is_true(has_scm, "rockspec/trigger-realtime-scm-1.rockspec is missing")
  end)
end)
