-- wrk script for bench/pages.py (issue 26): signed-in users reading pages and REST.
--
--   wrk ... -s bench/pages.lua URL -- PATHS CREDS THINK_LO_MS THINK_HI_MS
--
-- PATHS: one request path per line (a page, or /rest/... for the REST API).
-- CREDS: one user per line, "SESSION<TAB>TOKEN": pages carry the user's session cookie, REST
-- calls the user's token, as a browser and a script would. Each request picks a path and a user
-- at random; between two requests a connection waits THINK_LO..THINK_HI ms (a person reading;
-- 0 0 for none). wrk measures latency from the request to its answer, without the wait.

local paths, creds = {}, {}
local think_lo, think_hi = 0, 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  for line in io.lines(args[2]) do
    local session, token = line:match("^([^\t]*)\t(.*)$")
    if session then creds[#creds + 1] = { session, token } end
  end
  think_lo, think_hi = tonumber(args[3]) or 0, tonumber(args[4]) or 0
  -- every thread its own sequence
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
  local p = paths[math.random(#paths)]
  local c = creds[math.random(#creds)]
  local h = {}
  if p:sub(1, 6) == "/rest/" then
    h["Authorization"] = "Bearer " .. c[2]
    h["Accept"] = "application/json"
  else
    h["Cookie"] = "trove_session=" .. c[1]
    h["Accept"] = "text/html"
  end
  return wrk.format("GET", p, h)
end

function delay()
  if think_hi > 0 then
    return math.random(think_lo, think_hi)
  end
  return 0
end
