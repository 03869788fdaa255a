module bufpool/bench/go

go 1.19
