-- The same request shape as grants.lua, against the trivial handler.
function init(args)
  n = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local body = string.format(
    '{"operation":"request","device_id":"string=wrk-%d","request_id":"r-%d","nonce":"nonce-%012d","features":[{"name":"modeler"}]}',
    n, n, n)
  return wrk.format(nil, "/api/v1/capability", nil, body)
end
