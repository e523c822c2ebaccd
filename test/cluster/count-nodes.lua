-- wrk script: count the responses per node. The demo page's title is "<cluster>: <node>".
-- Each wrk thread has its own Lua state; done() collects the threads' tables.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
end

function response(status, headers, body)
  local node = body and string.match(body, "<title>[^<]-: ([%w%-]+)</title>") or nil
  local key = node or ("status-" .. status)
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get("counts")) do
      total[key] = (total[key] or 0) + n
    end
  end
  for key, n in pairs(total) do
    io.write(string.format("node %s %d\n", key, n))
  end
end
