-- craftd write: POST /key {"<16-byte key>":"<16-byte value>"}, a new key each time.
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")
function request()
   local k = write_key()
   return wrk.format("POST", "/key", craftd_headers({["Content-Type"] = "application/json"}),
                     '{"' .. k .. '":"' .. write_value() .. '"}')
end
