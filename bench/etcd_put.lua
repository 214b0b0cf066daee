-- etcd write through the JSON gateway: POST /v3/kv/put {"key":b64,"value":b64}, a new key each time.
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")
function request()
   local k = write_key()
   return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"},
                     '{"key":"' .. b64(k) .. '","value":"' .. b64(write_value()) .. '"}')
end
