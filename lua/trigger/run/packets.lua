--- `application/store` packets: a run's payload or output too large for the row lives in
-- object storage. The API gives a presigned URL for it, fetched without our credentials.
-- Runs inside a reading coroutine (a subscription's loop), through `trigger.transport.request`.
-- @module trigger.run.packets
local core = require "trigger.core"
local request = require "trigger.transport.request"

local M = {}

local function describe(url)
  return "GET " .. url
end

local function failure_text(status, failure, url)
  if status then return "HTTP " .. status .. " from " .. describe(url) end
  return (type(failure) == "table" and failure.message or tostring(failure)) .. " ("
    .. describe(url) .. ")"
end

--- Fetch a stored packet, asking the newer per-run route first and the legacy one after a 404.
-- Cached per packet path in `cache`, so an unchanged packet is fetched once.
-- @param owner the reading coroutine's state (see `trigger.transport.request`)
-- @tparam table cache "field\0path" → {body, content type}
-- @tparam {string,...} api_headers the request headers of the API (`trigger.transport.request.api_headers`)
-- @tparam string run_id
-- @tparam string field "payload" or "output"
-- @tparam string path the packet's storage path
-- @return body and content type, or nil and a message
function M.fetch(owner, cache, api_headers, run_id, field, path)
  local cache_key = field .. "\0" .. path
  local cached = cache[cache_key]
  if cached then return cached[1], cached[2] end
  local base = owner.settings.base_url
  local tries = {
    base .. "/api/v1/runs/" .. core.url_encode(run_id) .. "/packets/" .. field,
    base .. "/api/v1/packets/" .. core.url_encode(path),
  }
  local presigned, last
  for _, url in ipairs(tries) do
    local status, headers, body = request.http(owner, { url = url, headers = api_headers })
    if status == 200 then
      local doc = require("trigger.json").decode(body)
      presigned = type(doc) == "table" and doc.presignedUrl
      if type(presigned) == "string" then break end
      last = "no presignedUrl in the answer of " .. describe(url)
    elseif status == 404 then
      last = "packet not found (" .. describe(url) .. ")"
    else
      last = failure_text(status, headers, url)
      break
    end
    presigned = nil
  end
  if not presigned then return nil, last end
  local status, headers, body = request.http(owner, { url = presigned })
  if status ~= 200 then
    return nil, (status and ("HTTP " .. status) or failure_text(nil, headers, "the presigned URL"))
      .. " fetching the stored packet"
  end
  local ctype = (headers["content-type"] or "application/json"):match("^[^;%s]+")
  cache[cache_key] = { body, ctype }
  return body, ctype
end

return M
