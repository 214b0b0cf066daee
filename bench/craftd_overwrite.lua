-- craftd overwrite: POST /key {"<a random preloaded key>":"<16-byte value>"},
-- so that writes land all over the map (bench/cow.py: the pages a snapshot's
-- child keeps once the parent has written to them).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")
function request()
   counter = counter + 1
   return wrk.format("POST", "/key", craftd_headers({["Content-Type"] = "application/json"}),
                     '{"' .. read_key() .. '":"' .. write_value() .. '"}')
end
