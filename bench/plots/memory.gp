# made by bench/report.py (bench/plots.py) from the run's data; run from the repository's root
set terminal pngcairo size 900,480 font ',10'
set output 'bench/plots/memory.png'
set title 'craftd vs etcd 3.4.23: RSS of a single node against keys held (16-byte keys and values)'
set key top left
set grid
set xlabel 'keys held (thousands)'
set ylabel 'RSS MiB'
set yrange [0:*]
set xrange [0:*]
plot 'bench/plots/memory.dat' using ($1/1000):2 title 'craftd' with linespoints pt 7, '' using ($1/1000):3 title 'etcd' with linespoints pt 5
