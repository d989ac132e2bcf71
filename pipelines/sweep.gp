# sweep.gp: test accuracy vs a swept quantity (depth, width) for all vs BN-only.
# gnuplot -e "out='depth.png'; file='depth.tsv'; xlab='depth'; heading='...'" pipelines/sweep.gp
# file: TSV with a header: x, all, bnonly (accuracies in %).
set terminal pngcairo size 900,560 font ",11"
set output out
set title heading noenhanced
set datafile separator "\t"
set key outside bottom center horizontal   # below the plot: never over a point or its label
set xlabel xlab
set ylabel "test accuracy (%)"
set yrange [0:100]
set logscale x 2
set grid
set offsets graph 0.05, graph 0.05, 0, 0
plot file using 1:2:xtic(1) with linespoints lw 2 pt 7 title "all parameters", \
     file using 1:3 with linespoints lw 2 pt 5 title "BatchNorm only", \
     file using 1:2:(sprintf("%.1f",$2)) with labels offset 0,1 notitle, \
     file using 1:3:(sprintf("%.1f",$3)) with labels offset 0,-1 notitle
