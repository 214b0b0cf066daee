-- Shared by every wrk script in bench/: per-thread ids, a `response` hook
-- counting statuses (non-200 answers are errors for this benchmark), and a
-- `done` hook printing one JSON line ("BENCHJSON {...}") that bench/report.py reads.
-- Environment: BENCH_RUN (a digit, makes written keys unique across runs),
-- BENCH_NREAD (how many preloaded keys "r%015d" exist, for the read scripts).

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("id", next_id)
   table.insert(threads, thread)
end

run = tonumber(os.getenv("BENCH_RUN") or "0") % 10
nread = tonumber(os.getenv("BENCH_NREAD") or "10000")
counter = 0
n200 = 0
nbad = 0
bad = {}   -- status (as a string) -> count
sample = "" -- first non-200 body seen by this thread

function init(args)
   math.randomseed(id * 7919 + run * 104729 + os.time())
end

function response(status, headers, body)
   if status == 200 then
      n200 = n200 + 1
   else
      nbad = nbad + 1
      local k = tostring(status)
      bad[k] = (bad[k] or 0) + 1
      if sample == "" and body then sample = string.sub(body, 1, 200) end
   end
end

-- A unique 16-byte written key and a 16-byte value.
function write_key()
   counter = counter + 1
   return string.format("w%d%d%013d", run, id, counter)
end

function write_value()
   return string.format("v%015d", counter)
end

-- Headers of a craftd request: h plus, when BENCH_AUTHZ (base64 of
-- user:password) is set (BENCH_AUTH=1 in run.sh), HTTP Basic credentials.
function craftd_headers(h)
   h = h or {}
   local authz = os.getenv("BENCH_AUTHZ")
   if authz and authz ~= "" then h["Authorization"] = "Basic " .. authz end
   return h
end

-- A random preloaded 16-byte key.
function read_key()
   return string.format("r%015d", math.random(0, nread - 1))
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function b64(s)
   local out = {}
   for i = 1, #s, 3 do
      local a, b, c = string.byte(s, i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local c1 = math.floor(n / 262144) % 64
      local c2 = math.floor(n / 4096) % 64
      local c3 = math.floor(n / 64) % 64
      local c4 = n % 64
      out[#out + 1] = string.sub(b64chars, c1 + 1, c1 + 1) .. string.sub(b64chars, c2 + 1, c2 + 1)
         .. (b and string.sub(b64chars, c3 + 1, c3 + 1) or "=")
         .. (c and string.sub(b64chars, c4 + 1, c4 + 1) or "=")
   end
   return table.concat(out)
end

local function jstr(s)
   return '"' .. string.gsub(s, '[%c"\\]', function(ch)
      return string.format("\\u%04x", string.byte(ch))
   end) .. '"'
end

function done(summary, latency, requests)
   local ok, nb, codes, smp = 0, 0, {}, ""
   for _, t in ipairs(threads) do
      ok = ok + t:get("n200")
      nb = nb + t:get("nbad")
      for k, v in pairs(t:get("bad")) do codes[k] = (codes[k] or 0) + v end
      if smp == "" then smp = t:get("sample") end
   end
   local cl = {}
   for k, v in pairs(codes) do cl[#cl + 1] = jstr(k) .. ":" .. v end
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"rps":%.1f,' ..
      '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,"lat_mean_us":%.1f,' ..
      '"n200":%d,"nbad":%d,"bad_codes":{%s},"bad_sample":%s,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      ok, nb, table.concat(cl, ","), jstr(smp),
      e.connect, e.read, e.write, e.status, e.timeout))
end
