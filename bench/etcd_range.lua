-- etcd read through the JSON gateway: POST /v3/kv/range {"key":b64} of a random preloaded key;
-- linearizable (etcd's default) unless BENCH_SERIALIZABLE=1.
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")
local ser = os.getenv("BENCH_SERIALIZABLE") == "1" and ',"serializable":true' or ""
function request()
   return wrk.format("POST", "/v3/kv/range", {["Content-Type"] = "application/json"},
                     '{"key":"' .. b64(read_key()) .. '"' .. ser .. '}')
end
