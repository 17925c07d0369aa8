-- Checks the generated reference's text (make doc runs it after LDoc and check_links.lua):
--
--   lua5.4 tools/doc/check_html.lua [doc] [types/library/trigger.lua]
--
--  * no Markdown emphasis inside a word: `WAITING_FOR_DEPLOY` written without backticks comes
--    out as WAITING<em>FOR</em>DEPLOY (LDoc's Markdown reads the underscores as emphasis).
--    Write such names in backticks. Each hit is printed with its file and the words around it.
--  * every public class is in the index's Classes list, with a page of its own: a class of the
--    LuaLS definitions (types/library/trigger.lua) that has methods is one a program is handed
--    (Subscription, RunStreams, Stream, ...).
-- Exits 1 if anything is wrong.
local root = arg[1] or "doc"
local meta = arg[2] or "types/library/trigger.lua"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local bad = 0
local function report(fmt, ...)
  bad = bad + 1
  print(string.format(fmt, ...))
end

local files = {}
local p = io.popen("find '" .. root .. "' -name '*.html' | sort")
for line in p:lines() do files[#files + 1] = line end
p:close()
if #files == 0 then
  report("check_html: no HTML under %s", root)
end

-- Intraword emphasis: <em> right after a letter or digit, or </em> right before one.
for _, file in ipairs(files) do
  local text = read(file)
  for _, pattern in ipairs({ "()[%w]<em>", "()</em>[%w]" }) do
    for at in text:gmatch(pattern) do
      local s = text:sub(math.max(1, at - 30), at + 40):gsub("%s+", " ")
      report("%s: emphasis inside a word (write the name in backticks): ...%s...", file, s)
    end
  end
end

-- The public classes: ---@class trigger.X declared with methods (function X:m) in the meta file.
local classes, bound, pending = {}, {}, nil
for line in (read(meta) or ""):gmatch("[^\n]*") do
  local cname = line:match("^%-%-%-@class%s+trigger%.(%u[%w_]*)")
  if cname then
    pending = cname
  elseif not line:match("^%-%-%-") then
    local var = line:match("^local%s+([%w_]+)%s*=%s*{}")
    if var and pending then bound[var] = pending end
    local owner = line:match("^function%s+([%w_]+):")
    if owner and bound[owner] then classes[bound[owner]] = true end
    pending = nil
  end
end
if next(classes) == nil then report("check_html: no class with methods in %s", meta) end

local index = read(root .. "/index.html") or ""
local classes_part = index:match("<h2>Classes</h2>(.-)</ul>") or ""
local listed = 0
for name in pairs(classes) do
  listed = listed + 1
  if not read(root .. "/classes/" .. name .. ".html") then
    report("%s/classes/%s.html: missing: class %s has no page (mark it @classmod)", root, name, name)
  end
  if not classes_part:find('href="classes/' .. name .. '.html"', 1, true) then
    report("%s/index.html: class %s is not in the Classes list", root, name)
  end
end

print(string.format("check_html: %d files, %d public classes, %d problem(s)", #files, listed, bad))
os.exit(bad == 0 and 0 or 1)
