-- craftd read: GET /key/<random preloaded key>?level=$BENCH_LEVEL (linearizable by default).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")
local level = os.getenv("BENCH_LEVEL") or "linearizable"
function request()
   return wrk.format("GET", "/key/" .. read_key() .. "?level=" .. level, craftd_headers())
end
