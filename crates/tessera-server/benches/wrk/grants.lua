-- Grants only: every request a fresh seat for a new device (never returned).
-- Used by ../wrk.sh; each wrk thread numbers its own devices. Answers other than 200 are
-- counted by wrk itself ("Non-2xx or 3xx responses"); no response() hook, which would slow wrk.
local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  n = 0
  -- the run's name (wrk ... -- NAME) keeps devices and nonces apart from earlier runs
  run = args[1] or "0"
  prefix = string.format("string=wrk-%s-%d", run, id)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local body = string.format(
    '{"operation":"request","device_id":"%s-%d","request_id":"r-%d","nonce":"nonce-%s-%d-%012d","features":[{"name":"modeler"}]}',
    prefix, n, n, run, id, n)
  return wrk.format(nil, "/api/v1/capability", nil, body)
end
