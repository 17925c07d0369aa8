-- The public routes: realtime shapes, JWT claims, packets and presigned blobs.
--
-- Order of checks as on the real server: 401 (who are you), 404 (does it exist), 403 (may you see
-- it), then the concurrency limit (429), then the Electric shape protocol.
local cqueues = require "cqueues"
local hmac = require "openssl.hmac"
local auth = require "trigger_realtime_server.auth"
local http = require "trigger_realtime_server.http"
local json = require "trigger_realtime_server.json"
local native = require "trigger_realtime_server.native"
local util = require "trigger_realtime_server.util"

local realtime = {}

local JSON_TYPE = "application/json; charset=utf-8"

local function json_response(status, value, headers)
  headers = headers or {}
  table.insert(headers, 1, { "content-type", JSON_TYPE })
  return http.response(status, headers, json.encode(value))
end
realtime.json_response = json_response

local function error_response(status, message)
  return json_response(status, { error = message })
end

local function electric_error(status, field, message)
  return json_response(status, { message = "Invalid request", errors = { [field] = { message } } })
end

---------------------------------------------------------------------------------------------------
-- Electric protocol

local UP_TO_DATE = json.ordered({ headers = { control = "up-to-date" } }, { "headers" })
local MUST_REFETCH = json.array({ { headers = { control = "must-refetch" } } })

local CURSOR_EPOCH_S = 1728432000 -- 2024-10-09T00:00:00Z, the start of Electric's cursor count
local CURSOR_INTERVAL_S = 20

-- Electric's cursor: the current 20 s interval; never the one the client sent, so that a cache
-- keyed on the URL can't serve a live response twice.
local function next_cursor(now_ms, previous)
  local cursor = math.ceil((now_ms / 1000 - CURSOR_EPOCH_S) / CURSOR_INTERVAL_S)
  if tostring(cursor) == previous then cursor = cursor + math.random(1, 3600) end
  return tostring(cursor)
end

-- "-1" -> { initial = true }; "<seq>_<k>" -> { seq, k }; anything else -> nil
local function parse_offset(text)
  if text == "-1" then return { initial = true } end
  local seq, k = text:match("^(%d+)_(%d+)$")
  if not seq then return nil end
  return { seq = tonumber(seq), k = tonumber(k) }
end

local function body_of(msgs, up_to_date)
  if up_to_date then msgs[#msgs + 1] = UP_TO_DATE end
  return json.encode(json.array(msgs))
end

local function shape_headers(s, offset, extra)
  local headers = {
    { "content-type", JSON_TYPE },
    { "electric-handle", s.handle },
    { "electric-offset", offset },
  }
  for _, h in ipairs(extra) do headers[#headers + 1] = h end
  return headers
end

-- A non-live 200: handle, offset, schema, and up-to-date when the body ends up to date.
local function sync_response(s, msgs, offset, up_to_date)
  local extra = { { "electric-schema", s:schema() } }
  if up_to_date then extra[#extra + 1] = { "electric-up-to-date", "" } end
  extra[#extra + 1] = { "cache-control", "public, max-age=60, stale-while-revalidate=300" }
  return http.response(200, shape_headers(s, offset, extra), body_of(msgs, up_to_date))
end

-- A live 200 always ends up to date and carries a cursor instead of the schema.
local function live_response(srv, s, msgs, offset, req)
  local extra = {
    { "electric-cursor", next_cursor(srv.now_ms(), req.params.cursor) },
    { "electric-up-to-date", "" },
    { "cache-control", "public, max-age=5, stale-while-revalidate=5" },
  }
  return http.response(200, shape_headers(s, offset, extra), body_of(msgs, true))
end

local function must_refetch(s)
  return http.response(409, {
    { "content-type", JSON_TYPE }, { "electric-handle", s.handle },
  }, json.encode(MUST_REFETCH))
end

local function out_of_bounds()
  return electric_error(400, "offset", "out of bounds for this shape")
end

-- offset=-1 or `<S>_<k>` with k > 0: the snapshot as of S, chunk_rows rows at a time. The answer
-- to offset=-1 is never up to date (as on Electric: the client always asks once more).
local function snapshot_chunk(srv, s, seq, k, initial, opts)
  local rows = s:snapshot(srv.store, seq)
  if k > #rows then return out_of_bounds() end
  local last = math.min(#rows, k + srv.opts.chunk_rows)
  local msgs = {}
  for i = k + 1, last do msgs[#msgs + 1] = s:insert_message(rows[i], opts) end
  if last < #rows then return sync_response(s, msgs, ("%d_%d"):format(seq, last), false) end
  local up_to_date = not initial and seq == srv.store.head
  return sync_response(s, msgs, ("%d_0"):format(seq), up_to_date)
end

-- Non-live request at a log offset: the changes since, chunk_rows at most.
local function catch_up(srv, s, seq, opts)
  local msgs, last = s:changes(srv.store, seq, srv.opts.chunk_rows, opts)
  return sync_response(s, msgs, ("%d_0"):format(last), last == srv.store.head)
end

-- Live request: answer at once if something changed since `seq`, else hold until a change, the
-- hold time, a rotation (409) or the client hanging up (nil: close without answering).
local function long_poll(srv, conn, s, seq, req, opts)
  local deadline = cqueues.monotime() + srv.opts.hold_ms / 1000
  while true do
    if conn.dropped then return nil end
    if not srv.shapes:current(s) then
      return must_refetch(srv.shapes:lookup(s.def, srv.now_ms()))
    end
    if seq > srv.store.head then return out_of_bounds() end -- the log was reset under us
    local msgs = s:changes(srv.store, seq, nil, opts)
    if #msgs > 0 then
      return live_response(srv, s, msgs, ("%d_0"):format(srv.store.head), req)
    end
    local why = srv:wait_change(conn, deadline)
    if why == "gone" then return nil end
    if why == "timeout" then
      return live_response(srv, s, {}, ("%d_0"):format(seq), req)
    end
  end
end

-- Without x-trigger-electric-version the real server speaks the legacy dialect.
local LEGACY_NAMES = { ["electric-handle"] = "electric-shape-id",
                       ["electric-offset"] = "electric-chunk-last-offset" }

local function legacy_headers(res)
  for _, h in ipairs(res.headers) do h[1] = LEGACY_NAMES[h[1]] or h[1] end
  return res
end

local function shape_request(srv, conn, req, def)
  local p = req.params
  local legacy = not req.headers["x-trigger-electric-version"]
  local opts = { legacy_status = not req.headers["x-trigger-api-version"] }
  local handle = p.handle or (legacy and p.shape_id) or nil
  if not p.offset then return electric_error(400, "offset", "can't be blank") end
  local offset = parse_offset(p.offset)
  if not offset then return electric_error(400, "offset", "has invalid format") end
  if not offset.initial and not handle then
    return electric_error(400, "handle", "can't be blank when offset != -1")
  end
  local s = srv.shapes:lookup(def, srv.now_ms())
  local res
  if handle and handle ~= s.handle then
    res = must_refetch(s)
  elseif offset.initial then
    res = snapshot_chunk(srv, s, srv.store.head, 0, true, opts)
  elseif offset.seq > srv.store.head then
    res = out_of_bounds()
  elseif offset.k > 0 then
    res = snapshot_chunk(srv, s, offset.seq, offset.k, false, opts)
  elseif p.live == "true" then
    res = long_poll(srv, conn, s, offset.seq, req, opts)
  else
    res = catch_up(srv, s, offset.seq, opts)
  end
  if res and legacy then legacy_headers(res) end
  return res
end

---------------------------------------------------------------------------------------------------
-- Routes

local function skip_set(req, principal)
  local skip = {}
  for _, c in ipairs(util.split_commas(req.params.skipColumns)) do skip[c] = true end
  for _, c in ipairs(principal.skip_columns or {}) do skip[c] = true end
  return skip
end

local function authenticate(srv, req)
  return auth.authenticate(req.headers, {
    secret_key = srv.opts.secret_key, environment_id = srv.opts.environment_id,
    now_ms = srv.now_ms,
  })
end

local function run_resource(row)
  return { kind = "run", id = row.friendlyId, task = row.taskIdentifier, tags = row.runTags,
           batch = row.batchId }
end

-- Since the 2026-07-21 security release (both backends): an empty tag or one holding a control
-- character, DEL, `\` or `"` is a 400. -> nil or the error response
local function check_tags(text)
  if text == nil or text == "" then return nil end
  local i = 0
  for tag in (text .. ","):gmatch("([^,]*),") do
    i = i + 1
    local why
    if tag == "" then
      why = "Tags must not be empty"
    elseif tag:find('[%c\127\\"]') then
      why = "Tags must not contain control characters, backslashes or double quotes"
    end
    if why then
      return json_response(400, json.ordered({
        error = "Query Error",
        details = json.array({ json.ordered({ path = json.array({ "tags", i - 1 }), message = why },
                                            { "path", "message" }) }),
      }, { "error", "details" }))
    end
  end
end

-- Works out the shape a realtime request asks for. -> def or nil, error response
local function resolve_shape(srv, req, principal, route, id)
  if route == "runs" and not id then
    local bad = check_tags(req.params.tags)
    if bad then return nil, bad end
    local tags = util.split_commas(req.params.tags)
    if not auth.allows(principal, { kind = "tags", tags = tags }) then
      return nil, json_response(403, auth.FORBIDDEN)
    end
    return { route = "tags", tags = tags, created_at = req.params.createdAt }
  elseif route == "runs" then
    local rec = srv.store:find(id)
    if not rec then return nil, error_response(404, "Run not found") end
    if not auth.allows(principal, run_resource(rec.row)) then
      return nil, json_response(403, auth.FORBIDDEN)
    end
    return { route = "run", run_id = rec.row.id }
  else
    if not srv.store.batches[id] then return nil, error_response(404, "Batch not found") end
    if not auth.allows(principal, { kind = "batch", id = id }) then
      return nil, json_response(403, auth.FORBIDDEN)
    end
    return { route = "batch", batch_id = id }
  end
end

local function realtime_route(srv, conn, req, route, id)
  if req.method ~= "GET" then return error_response(405, "Method not allowed") end
  local principal, why = authenticate(srv, req)
  if not principal then return error_response(401, why) end
  local def, err = resolve_shape(srv, req, principal, route, id)
  if not def then return err end
  def.skip = skip_set(req, principal)
  if srv.backend == "native" then return native.request(srv, conn, req, def) end
  if srv.active_realtime >= srv.opts.max_connections then
    return error_response(429, "Too many concurrent requests")
  end
  srv.active_realtime = srv.active_realtime + 1
  local ok, res = pcall(shape_request, srv, conn, req, def)
  srv.active_realtime = srv.active_realtime - 1
  if not ok then error(res, 0) end
  return res
end

local function claims_route(srv, req)
  if req.method ~= "POST" then return error_response(405, "Method not allowed") end
  local principal, why = authenticate(srv, req)
  if not principal then return error_response(401, why) end
  if principal.kind ~= "secret" then return error_response(401, "Invalid or Missing API key") end
  return json_response(200, json.ordered({ sub = srv.opts.environment_id, pub = true },
                                         { "sub", "pub" }))
end

-- A presigned URL for a storage path; the signature is decoration (the blob route is open).
local function presign(srv, path)
  local sig = util.b64url_encode(hmac.new(srv.opts.secret_key, "sha256"):final(path))
  return ("%s/_blobs/%s?sig=%s"):format(srv.base_url, util.path_encode(path), sig)
end

local function run_packet_route(srv, req, id, which)
  if srv.opts.legacy_packets_only then return error_response(404, "Not found") end
  local principal, why = authenticate(srv, req)
  if not principal then return error_response(401, why) end
  local rec = srv.store:find(id)
  if not rec then return error_response(404, "Run not found") end
  if not auth.allows(principal, run_resource(rec.row)) then
    return json_response(403, auth.FORBIDDEN)
  end
  local data, data_type = rec.row[which], rec.row[which .. "Type"]
  if data_type ~= "application/store" or not data then
    return error_response(404, "Packet not found")
  end
  return json_response(200, { presignedUrl = presign(srv, data) })
end

local function legacy_packet_route(srv, req, encoded_path)
  local principal, why = authenticate(srv, req)
  if not principal then return error_response(401, why) end
  return json_response(200, { presignedUrl = presign(srv, util.path_decode(encoded_path)) })
end

local function blob_route(srv, req, encoded_path)
  local blob = srv.store:get_blob(util.path_decode(encoded_path))
  if not blob then return error_response(404, "Blob not found") end
  return http.response(200, { { "content-type", blob.content_type } },
                       req.method == "HEAD" and "" or blob.body)
end

-- -> response, or nil when the connection must close without an answer, or false when no route
-- here matches.
function realtime.dispatch(srv, conn, req)
  local path = req.path
  local route, id = path:match("^/realtime/v1/(runs)/([^/]+)$")
  if not route then route, id = path:match("^/realtime/v1/(batches)/([^/]+)$") end
  if route then return realtime_route(srv, conn, req, route, util.path_decode(id)) end
  if path == "/realtime/v1/runs" then return realtime_route(srv, conn, req, "runs", nil) end
  if path == "/api/v1/auth/jwt/claims" then return claims_route(srv, req) end
  local run_id, which = path:match("^/api/v1/runs/([^/]+)/packets/(%a+)$")
  if run_id and (which == "payload" or which == "output") then
    return run_packet_route(srv, req, util.path_decode(run_id), which)
  end
  local packet_path = path:match("^/api/v1/packets/(.+)$")
  if packet_path then return legacy_packet_route(srv, req, packet_path) end
  local blob_path = path:match("^/_blobs/(.+)$")
  if blob_path then return blob_route(srv, req, blob_path) end
  return false
end

return realtime
