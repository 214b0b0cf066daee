# made by bench/report.py (bench/plots.py) from the run's data; run from the repository's root
set terminal pngcairo size 900,480 font ',10'
set output 'bench/plots/latency.png'
set title 'craftd vs etcd 3.4.23: latency percentiles, medians of the rounds (log scale)'
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside top center horizontal
set grid ytics
set ylabel 'ms'
set logscale y
set xtics rotate by -30 left
plot 'bench/plots/latency.dat' using 2:xtic(1) title 'craftd', '' using 3 title 'etcd (JSON gateway)', '' using 4 title 'craftd baseline'
