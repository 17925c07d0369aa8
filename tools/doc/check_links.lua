-- Checks that every link of the generated reference resolves (make doc runs it after LDoc):
-- each relative href names a file that exists under the doc folder and, when it has a
-- fragment, an anchor (`name="…"` or `id="…"`) of that file. Links to other sites are not
-- fetched. Prints one line per broken link and exits 1 if there is any.
--
--   lua5.4 tools/doc/check_links.lua [doc]
local root = arg[1] or "doc"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The HTML files LDoc writes: index.html and one folder level below it.
local files = {}
local p = io.popen("find '" .. root .. "' -name '*.html' | sort")
for line in p:lines() do files[#files + 1] = line end
p:close()
if #files == 0 then
  io.stderr:write("check_links: no HTML under ", root, "\n")
  os.exit(1)
end

local function normalize(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then
      if #parts == 0 or parts[#parts] == ".." then parts[#parts + 1] = seg
      else parts[#parts] = nil end
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return (path:sub(1, 1) == "/" and "/" or "") .. table.concat(parts, "/")
end

local anchors = {} -- file -> set of anchors
local function anchors_of(file)
  if anchors[file] == nil then
    local text = read(file)
    local set = false
    if text then
      set = {}
      for a in text:gmatch('name%s*=%s*"([^"]*)"') do set[a] = true end
      for a in text:gmatch('id%s*=%s*"([^"]*)"') do set[a] = true end
    end
    anchors[file] = set
  end
  return anchors[file]
end

local function unescape(s)
  return (s:gsub("&amp;", "&"):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local broken, checked = 0, 0
for _, file in ipairs(files) do
  local dir = file:match("^(.*)/[^/]*$") or "."
  local text = read(file)
  for href in text:gmatch('href%s*=%s*"([^"]*)"') do
    if not href:match("^%a[%w+.-]*:") then -- http:, https:, mailto: are not fetched
      checked = checked + 1
      local path, frag = href:match("^([^#]*)#?(.*)$")
      local target = path == "" and file or normalize(dir .. "/" .. unescape(path))
      local set = anchors_of(target)
      local why
      if not set then
        why = "no file " .. target
      elseif frag ~= "" and not set[unescape(frag)] then
        why = "no anchor '" .. unescape(frag) .. "' in " .. target
      end
      if why then
        broken = broken + 1
        print(string.format("%s: href=\"%s\": %s", file, href, why))
      end
    end
  end
end
print(string.format("check_links: %d links in %d files, %d broken", checked, #files, broken))
os.exit(broken == 0 and 0 or 1)
