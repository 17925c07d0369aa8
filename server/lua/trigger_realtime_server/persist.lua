-- The server's state in a file (`state_file` / `--state FILE`), so that a kill -9 and a restart
-- is a real restart: same runs, change log, batches, blobs, and shape handles (clients keep
-- their handle and offset).
--
-- When it is written: never later than the response that reveals it. Server:handle calls
-- commit() before it writes any response while something changed since the last save, and
-- that waits for (or makes) a save of at least that state; so whatever a client has been told
-- (a run id, a handle, an offset, "ok") is on disk before the client could have read it, and a
-- kill -9 loses only changes nobody was told about yet. Changes nobody asked about (scenario
-- coroutines) are saved by a background saver at most DEBOUNCE_S after they happen. Saves are
-- spaced by at least twice the last save's duration, so a big store under a stream of changes
-- spends at most a third of its time saving; a response that arrives meanwhile waits for the
-- next save (group commit). A clean exit (close(), SIGTERM/SIGINT) saves too.
--
-- The file is written whole: a temporary file beside it, then rename() over it, so a reader (or
-- a restart after kill -9 in the middle of a save) sees the old state or the new one, never half.
-- Lua cannot fsync; when luaposix is installed the temporary file is fsynced before the rename.
-- Either way a kill -9 loses nothing written (the kernel has it); a power cut might.
--
-- Format: Lua data (numbers in %q form keep integers, floats and every byte of a string exact),
-- read back with load() in text mode and an environment holding only N (JSON null). Rows and
-- encoded rows are written once each and referred to by index from the runs, the base snapshot
-- and the change log (which share them in memory).
--
-- Saved besides the store and the shapes: the backend (electric / native) as set_backend left it
-- (the file wins over the option). Not saved: pending faults and stats (the test's instruments;
-- a restart starts with none), open connections, and the native backend's per-handle working
-- sets (native.lua rebuilds a set it does not have from the client's offset, as the real server
-- does after a restart). A shape handle read back whose client names an offset beyond the head (a
-- state file older than what it was told) makes that shape forget its handle: the client gets
-- 409 must-refetch, as from an Electric that lost the shape.
local cqueues = require "cqueues"
local json = require "trigger_realtime_server.json"
local values = require "trigger_realtime_server.values"

local persist = {}

persist.FORMAT = "trigger-realtime-server-state"
persist.VERSION = 1
persist.DEBOUNCE_S = 0.05

local NULL = json.null
local format, concat = string.format, table.concat

---------------------------------------------------------------------------------------------------
-- Extra sections: another part of the server with state of its own registers
--   persist.register(name, { save = fn(srv) -> plain Lua data, load = fn(srv, data),
--                            version = fn(srv) -> integer that goes up on every change })
-- Plain data: nil, booleans, numbers, strings, json.null and tables of those (no cycles).

local sections, section_names = {}, {}

function persist.register(name, section)
  assert(type(name) == "string" and type(section.save) == "function" and
         type(section.load) == "function" and type(section.version) == "function",
         "persist.register(name, { save, load, version })")
  if not sections[name] then section_names[#section_names + 1] = name end
  sections[name] = section
end

---------------------------------------------------------------------------------------------------
-- Writing

local function literal(v, depth)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" or t == "nil" then return format("%q", v) end
  if v == NULL then return "N" end
  if t ~= "table" then error("cannot save a " .. t, 0) end
  depth = (depth or 0) + 1
  if depth > 100 then error("cannot save: nesting too deep", 0) end
  local parts, n = {}, #v
  for i = 1, n do parts[i] = literal(v[i], depth) end
  for k, x in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      parts[#parts + 1] = "[" .. literal(k, depth) .. "]=" .. literal(x, depth)
    end
  end
  return "{" .. concat(parts, ",") .. "}"
end
persist.literal = literal

-- A raw row is positional: the realtime columns in order, then batchId. Columns that can hold a
-- table (text[], jsonb) go through literal(); the rest through one format call per row.
local ROW_COLUMNS, ROW_TABLEISH, ROW_FORMAT = {}, {}, {}
for i, col in ipairs(values.COLUMNS) do
  ROW_COLUMNS[i] = col.name
  ROW_TABLEISH[i] = col.kind == "text[]" or col.kind == "jsonb"
  ROW_FORMAT[i] = ROW_TABLEISH[i] and "%s" or "%q"
end
ROW_COLUMNS[#ROW_COLUMNS + 1] = "batchId"
ROW_FORMAT[#ROW_FORMAT + 1] = "%q"
ROW_FORMAT = "{" .. concat(ROW_FORMAT, ",") .. "},\n"

local ENC_COLUMNS = {}
for i, col in ipairs(values.COLUMNS) do ENC_COLUMNS[i] = col.name end
local NENC = #ENC_COLUMNS
local ENC_FORMAT = "{%d," .. ("%q,"):rep(NENC - 1) .. "%q},\n"

-- The four per-row functions are generated (one format call, no loop over the columns): they
-- are most of the time a save or a load takes.
local function generate(name, args, body, env)
  local code = ("return function(%s)\n%s\nend"):format(args, body)
  return assert(load(code, "=persist." .. name, "t", env))()
end

local function field(name) return ("[%q]"):format(name) end

-- raw row -> text
local row_text
do
  local exprs = {}
  for i, name in ipairs(ROW_COLUMNS) do
    exprs[i] = ROW_TABLEISH[i] and ("literal(row%s)"):format(field(name)) or "row" .. field(name)
  end
  row_text = generate("row_text", "row", ("return format(%q, %s)"):format(ROW_FORMAT,
    concat(exprs, ", ")), { format = format, literal = literal })
end

-- An encoded row is positional too, after the index of the raw row it was encoded from; a text
-- value that is the raw row's own string (text columns: most of the bytes) is written `true`.
local enc_text
do
  local lines, exprs = { "local v" }, { "row_index" }
  for i, name in ipairs(ENC_COLUMNS) do
    lines[#lines + 1] = ("v = enc%s; local a%d = v == row%s or (v ~= NULL and v or nil)")
      :format(field(name), i, field(name))
    exprs[#exprs + 1] = "a" .. i
  end
  lines[#lines + 1] = ("return format(%q, %s)"):format(ENC_FORMAT, concat(exprs, ", "))
  enc_text = generate("enc_text", "enc, row, row_index", concat(lines, "\n"),
                      { format = format, NULL = NULL })
end

local OP_CODE = { insert = "i", update = "u", delete = "d" }
local OP_NAME = { i = "insert", u = "update", d = "delete" }

local function ix(i) return i and format("%d", i) or "nil" end

-- The whole state as the text of a Lua chunk, in pieces: a list of lists of strings.
function persist.pieces(srv)
  local st, reg = srv.store, srv.shapes
  local rows, encs = {}, {}
  local row_ix, enc_ix = {}, {}
  local function ref_row(r)
    if r == nil then return nil end
    local i = row_ix[r]
    if not i then
      i = #rows + 1
      rows[i] = row_text(r)
      row_ix[r] = i
    end
    return i
  end
  local function ref_enc(e, r) -- r: the raw row `e` was encoded from
    if e == nil then return nil end
    local i = enc_ix[e]
    if not i then
      i = #encs + 1
      encs[i] = enc_text(e, r, ref_row(r))
      enc_ix[e] = i
    end
    return i
  end
  local function recs(map)
    local out = {}
    for _, rec in pairs(map) do
      out[#out + 1] = format("%s,%s,%d,\n", ix(ref_row(rec.row)), ix(ref_enc(rec.enc, rec.row)),
                             rec.order)
    end
    return out
  end
  local runs, base = recs(st.runs), recs(st.base)
  local log = {}
  for seq = st.floor + 1, st.head do
    local e = st.log[seq]
    log[#log + 1] = format("%q,%q,%s,%s,%s,%s,%d,\n", OP_CODE[e.op], e.id,
      ix(ref_row(e.before)), ix(ref_enc(e.before_enc, e.before)), ix(ref_row(e.after)),
      ix(ref_enc(e.after_enc, e.after)), e.order)
  end
  local batches = {}
  for id in pairs(st.batches) do batches[#batches + 1] = format("%q,", id) end
  local blobs = {}
  for path, b in pairs(st.blobs) do
    blobs[#blobs + 1] = format("%q,%q,%q,\n", path, b.content_type, b.body)
  end
  local shapes = {}
  for _, s in pairs(reg.by_key) do
    shapes[#shapes + 1] = format("{def=%s,handle=%q,cutoff=%q},\n", literal(s.def), s.handle, s.cutoff)
  end
  local extra = {}
  for _, name in ipairs(section_names) do
    extra[#extra + 1] = format("[%q]=%s,\n", name, literal(sections[name].save(srv)))
  end
  return {
    { "-- ", persist.FORMAT, " (written by trigger-realtime-server; Lua data, do not edit)\n",
      format("return {format=%q,version=%d,bool_style=%q,timestamp_style=%q,backend=%q,\n",
             persist.FORMAT, persist.VERSION, srv.opts.bool_style, srv.opts.timestamp_style,
             srv.backend),
      format("head=%d,floor=%d,next_number=%d,next_order=%d,\n", st.head, st.floor,
             st.next_number, st.next_order),
      "rows={\n" }, rows, { "},\nencs={\n" }, encs, { "},\nruns={\n" }, runs,
    { "},\nbase={\n" }, base, { "},\nlog={\n" }, log, { "},\nbatches={" }, batches,
    { "},\nblobs={\n" }, blobs, { "},\nshapes={\n" }, shapes, { "},\nextra={\n" }, extra,
    { "},\n}\n" },
  }
end

-- Run fn(...) with the garbage collector stopped: saving and loading allocate a lot and free
-- little, and a big live heap makes every collection cycle long.
local function without_gc(fn, ...)
  local running = collectgarbage("isrunning")
  collectgarbage("stop")
  local r = table.pack(pcall(fn, ...))
  if running then collectgarbage("restart") end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- The whole state as one string.
function persist.encode(srv)
  local parts = {}
  for _, list in ipairs(without_gc(persist.pieces, srv)) do parts[#parts + 1] = concat(list) end
  return concat(parts)
end

---------------------------------------------------------------------------------------------------
-- Reading

local function check(cond, what, ...)
  if not cond then error(format(what, ...), 0) end
end

local function is_int(v) return math.type(v) == "integer" end

-- positional row -> raw row
local decode_row
do
  local items = {}
  for i, name in ipairs(ROW_COLUMNS) do items[i] = ("%s = p[%d]"):format(field(name), i) end
  local body = ([[
if type(p) ~= "table" then error("a row is not a table", 0) end
local row = { %s }
if type(row.id) ~= "string" or type(row.friendlyId) ~= "string" then error("a row has no id", 0) end
return row]]):format(concat(items, ", "))
  decode_row = generate("decode_row", "p", body, { type = type, error = error })
end

-- positional encoded row -> encoded row (every column a string or NULL)
local decode_enc
do
  local lines = { [[
if type(p) ~= "table" then error("an encoded row is not a table", 0) end
local row = rows[p[1] ] or error("an encoded row names no row", 0)
local v]] }
  local items = {}
  for i, name in ipairs(ENC_COLUMNS) do
    lines[#lines + 1] = ("v = p[%d]; if v == true then v = row%s elseif v == nil then v = NULL end")
      :format(i + 1, field(name))
    lines[#lines + 1] = ("if type(v) ~= 'string' and v ~= NULL then bad(%q) end; local a%d = v")
      :format(name, i)
    items[i] = ("%s = a%d"):format(field(name), i)
  end
  lines[#lines + 1] = ("return { %s }"):format(concat(items, ", "))
  decode_enc = generate("decode_enc", "p, rows", concat(lines, "\n"), {
    type = type, error = error, NULL = NULL,
    bad = function(name) error("an encoded row holds no text for " .. name, 0) end,
  })
end

-- Parsed file -> the pieces of a store and a shape list; raises a message on anything amiss.
local function rebuild(t, opts)
  check(type(t) == "table" and t.format == persist.FORMAT, "not a %s file", persist.FORMAT)
  check(t.version == persist.VERSION, "format version %s, this server reads %d",
        tostring(t.version), persist.VERSION)
  check(t.bool_style == opts.bool_style and t.timestamp_style == opts.timestamp_style,
        "written with bool_style=%s timestamp_style=%s, the server runs with %s %s",
        tostring(t.bool_style), tostring(t.timestamp_style), opts.bool_style, opts.timestamp_style)
  for _, k in ipairs({ "head", "floor", "next_number", "next_order" }) do
    check(is_int(t[k]) and t[k] >= 0, "%s is not a non-negative integer", k)
  end
  check(t.floor <= t.head, "floor beyond head")
  check(t.backend == "electric" or t.backend == "native", "unknown backend %s", tostring(t.backend))
  for _, k in ipairs({ "rows", "encs", "runs", "base", "log", "batches", "blobs", "shapes" }) do
    check(type(t[k]) == "table", "%s is missing", k)
  end
  local rows, encs = {}, {}
  for i, p in ipairs(t.rows) do rows[i] = decode_row(p) end
  for i, p in ipairs(t.encs) do encs[i] = decode_enc(p, rows) end
  local function row_at(i, optional)
    if i == nil and optional then return nil end
    check(rows[i], "row reference %s out of range", tostring(i))
    return rows[i]
  end
  local function enc_at(i, optional)
    if i == nil and optional then return nil end
    check(encs[i], "encoded row reference %s out of range", tostring(i))
    return encs[i]
  end
  local function recs(flat, n_hint)
    local map = {}
    check(#flat % 3 == 0, "%s: broken record list", n_hint)
    for k = 1, #flat, 3 do
      local row = row_at(flat[k])
      check(is_int(flat[k + 2]), "%s: order is not an integer", n_hint)
      map[row.id] = { row = row, enc = enc_at(flat[k + 1]), order = flat[k + 2] }
    end
    return map
  end
  local s = {
    head = t.head, floor = t.floor, next_number = t.next_number, next_order = t.next_order,
    runs = recs(t.runs, "runs"), base = recs(t.base, "base"), by_friendly = {}, batches = {},
    blobs = {}, log = {},
  }
  for id, rec in pairs(s.runs) do s.by_friendly[rec.row.friendlyId] = id end
  local flat, n = t.log, t.head - t.floor
  for k = 0, n - 1 do
    local j = k * 7
    local op = OP_NAME[flat[j + 1]]
    check(op and type(flat[j + 2]) == "string" and is_int(flat[j + 7]), "change %d is broken",
          t.floor + k + 1)
    local seq = t.floor + k + 1
    s.log[seq] = { seq = seq, op = op, id = flat[j + 2], order = flat[j + 7],
                   before = row_at(flat[j + 3], op == "insert"),
                   before_enc = enc_at(flat[j + 4], op == "insert"),
                   after = row_at(flat[j + 5], op == "delete"),
                   after_enc = enc_at(flat[j + 6], op == "delete") }
  end
  check(flat[n * 7 + 1] == nil, "more changes than head - floor")
  for _, id in ipairs(t.batches) do
    check(type(id) == "string", "a batch id is not a string")
    s.batches[id] = true
  end
  local b = t.blobs
  check(#b % 3 == 0, "broken blob list")
  for k = 1, #b, 3 do
    check(type(b[k]) == "string" and type(b[k + 1]) == "string" and type(b[k + 2]) == "string",
          "a blob is broken")
    s.blobs[b[k]] = { content_type = b[k + 1], body = b[k + 2] }
  end
  local shapes = {}
  for _, sh in ipairs(t.shapes) do
    check(type(sh) == "table" and type(sh.def) == "table" and type(sh.handle) == "string" and
          (sh.cutoff == nil or type(sh.cutoff) == "number"), "a shape is broken")
    check(sh.def.route == "tags" or sh.def.route == "run" or sh.def.route == "batch",
          "a shape has an unknown route")
    shapes[#shapes + 1] = sh
  end
  check(t.extra == nil or type(t.extra) == "table", "extra is not a table")
  return s, shapes, t.extra or {}, t.backend
end

-- Text of a state file -> the state read back, or nil and a message.
local function decode(text, opts)
  local chunk, err = load(text, "=state", "t", { N = NULL })
  if not chunk then return nil, "not readable: " .. err end
  local ok, t = pcall(chunk)
  if not ok then return nil, "not readable: " .. tostring(t) end
  local built, s, shapes, extra, backend = pcall(rebuild, t, opts)
  if not built then return nil, s end
  return { store = s, shapes = shapes, extra = extra, backend = backend }
end

function persist.decode(text, opts)
  return without_gc(decode, text, opts)
end

-- Put a decoded state into the server (replacing its store's content and its shapes).
function persist.apply(srv, state)
  local st = srv.store
  for k, v in pairs(state.store) do st[k] = v end
  st.cache = nil
  st.version = st.version + 1
  srv.shapes:clear()
  for _, sh in ipairs(state.shapes) do srv.shapes:restore(sh.def, sh.handle, sh.cutoff) end
  srv.backend = state.backend
  for name, data in pairs(state.extra) do
    if sections[name] then
      sections[name].load(srv, data)
    else
      io.stderr:write("trigger_realtime_server: state file section ", name,
                      " is not known here; ignored\n")
    end
  end
end

---------------------------------------------------------------------------------------------------
-- The saver of one server

local Saver = {}
Saver.__index = Saver

local ok_posix, posix_unistd = pcall(require, "posix.unistd")
local ok_stdio, posix_stdio = pcall(require, "posix.stdio")
local can_fsync = ok_posix and ok_stdio and posix_unistd.fsync and posix_stdio.fileno

local function write_pieces(f, pieces)
  for _, list in ipairs(pieces) do
    for _, s in ipairs(list) do
      local ok, err = f:write(s)
      if not ok then return nil, err end
    end
  end
  return f:flush()
end

local function write_atomically(path, pieces)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = write_pieces(f, pieces)
  if ok and can_fsync then posix_unistd.fsync(posix_stdio.fileno(f)) end
  f:close()
  if not ok then
    os.remove(tmp)
    return nil, werr
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

function persist.new(srv, path)
  return setmetatable({ srv = srv, path = path, saved = -1, last_end = -math.huge,
                        last_duration = 0, saves = 0, backend = srv.backend, flips = 0 }, Saver)
end

-- A number that goes up with every change of anything saved.
function Saver:version()
  local srv = self.srv
  if srv.backend ~= self.backend then -- set_backend keeps no count of its own
    self.backend, self.flips = srv.backend, self.flips + 1
  end
  local v = srv.store.version + srv.shapes.version + self.flips
  for _, name in ipairs(section_names) do v = v + sections[name].version(srv) end
  return v
end

function Saver:dirty()
  return self:version() ~= self.saved
end

-- Read the file into the server if it exists. Raises "cannot load state file ..." when it
-- exists but cannot be read back.
function Saver:load()
  local f, err, errno = io.open(self.path, "rb")
  if not f then
    if errno == 2 then return false end -- ENOENT: a first start
    error(("trigger_realtime_server: cannot load state file %s"):format(err), 0)
  end
  local text, rerr = f:read("a")
  f:close()
  local state, why
  if text then state, why = persist.decode(text, self.srv.opts) else why = rerr end
  if not state then
    error(("trigger_realtime_server: cannot load state file %s: %s"):format(self.path, why), 0)
  end
  persist.apply(self.srv, state)
  self.saved = self:version()
  return true
end

-- Write the current state now. -> true, or nil and a message
function Saver:save()
  local started = cqueues.monotime()
  local v = self:version()
  local ok, pieces = pcall(without_gc, persist.pieces, self.srv)
  local err
  if ok then ok, err = write_atomically(self.path, pieces) else err = pieces end
  pieces = nil -- luacheck: ignore (let the collector have them before the next allocation)
  local now = cqueues.monotime()
  self.last_end, self.last_duration = now, now - started
  if not ok then return nil, ("cannot save state file %s: %s"):format(self.path, tostring(err)) end
  self.saved = v
  self.saves = self.saves + 1
  return true
end

function Saver:gap()
  return 2 * self.last_duration
end

-- Make sure the state as it is now is on disk before returning (waiting for the next save when
-- one just happened: see the top of this file). Call from a coroutine on the server's loop, or
-- from outside it (then it saves at once). -> true, or nil and a message
function Saver:commit()
  local v = self:version()
  local _, on_loop = cqueues.running()
  while self.saved < v do
    local wait = self.last_end + self:gap() - cqueues.monotime()
    if wait <= 0 or not on_loop then
      local ok, err = self:save()
      if not ok then return nil, err end
    else
      cqueues.sleep(wait)
    end
  end
  return true
end

-- The background saver: changes no response has revealed yet are saved DEBOUNCE_S after they
-- are seen (later when the last save was slow).
function Saver:run()
  local srv = self.srv
  while not srv.closed do
    if self:dirty() then
      cqueues.sleep(math.max(persist.DEBOUNCE_S, self.last_end + self:gap() - cqueues.monotime()))
      if self:dirty() and not srv.closed then
        local ok, err = self:save()
        if not ok then
          io.stderr:write("trigger_realtime_server: ", err, "\n")
          cqueues.sleep(1)
        end
      end
    else
      cqueues.poll(srv.changed, 1)
    end
  end
end

-- A request naming a handle read back from the file and an offset beyond the head: the file is
-- older than what that client was told. Forget the shape, so the client gets 409.
function Saver:check_request(req)
  local p = req.params
  local handle = p.handle or p.shape_id
  local seq = p.offset and p.offset:match("^(%d+)_%d+$")
  if not (handle and seq and tonumber(seq) > self.srv.store.head) then return end
  for _, s in pairs(self.srv.shapes.by_key) do
    if s.handle == handle and s.restored then
      self.srv.shapes:forget(s)
      return
    end
  end
end

return persist
