module cutoffbench

go 1.27
