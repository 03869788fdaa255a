-- wrk script: send DEPTH copies of the request in each write (HTTP/1.1 pipelining).
-- Usage: wrk ... -s bench/wrk/pipeline.lua URL -- DEPTH
init = function(args)
  local depth = tonumber(args[1]) or 1
  local copies = {}
  for i = 1, depth do
    copies[i] = wrk.format()
  end
  batch = table.concat(copies)
end

request = function()
  return batch
end
