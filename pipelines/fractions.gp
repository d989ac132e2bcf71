# fractions.gp: per BN layer, the fraction of |gamma| below each threshold (net-ablate --report),
# BN-only (solid) vs all parameters trained (dashed).
# gnuplot -e "out='fractions.png'; bn='bnonly.fractions.tsv'; all='all.fractions.tsv'; heading='...'" pipelines/fractions.gp
set terminal pngcairo size 1200,560 font ",11"
set output out
set title heading noenhanced
set datafile separator "\t"
set key outside right noenhanced
set ylabel "fraction of the layer's channels"
set yrange [0:1]
set grid
set xtics rotate by -60 font ",8" noenhanced
ncol = int(system("head -n 1 '".bn."' | awk -F'\t' '{print NF}'"))
set xlabel "BN layer (input to output; the last point: all layers)"
plot for [k=3:ncol] bn using 0:k:xtic(1) with linespoints lw 2 lc (k-2) title "bn-only ".columnhead(k), \
     for [k=3:ncol] all using 0:k with linespoints lw 1 dt 2 lc (k-2) title "all ".columnhead(k)
