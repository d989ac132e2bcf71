# curves.gp: train/test accuracy and loss vs epoch of several runs' metrics TSV (net-train --log).
# gnuplot -e "out='curves.png'; files='a.tsv b.tsv'; titles='all bnonly'; heading='...'" pipelines/curves.gp
# optional: w, h (picture size; default 1200 x 480, taller when the legend needs rows), fs (font, 11)
n = words(files)
if (!exists("w")) w = 1200
if (!exists("h")) h = 480 + (n > 2 ? 22 * int((n + 2) / 3) : 0)
if (!exists("fs")) fs = 11
set terminal pngcairo size w,h font ",".fs
set output out
set datafile separator "\t"
array C[10] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
if (n > 2) { set key outside bottom center horizontal maxrows int((n + 2) / 3) noenhanced } \
else { set key bottom right noenhanced }
set multiplot layout 1,2 title heading noenhanced
set xlabel "epoch"; set ylabel "accuracy"; set yrange [0:1]; set grid
set title "accuracy (solid: test, dashed: train)"
plot for [i=1:n] word(files,i) using "epoch":"test_acc" with linespoints lw 2 lc rgb C[1 + (i - 1) % 10] dt 1 title word(titles,i), \
     for [i=1:n] word(files,i) using "epoch":"train_acc" with lines dt 2 lw 2 lc rgb C[1 + (i - 1) % 10] notitle
set ylabel "cross-entropy loss"; set autoscale y
set title "loss (solid: test, dashed: train)"
if (n <= 2) { set key top right }
plot for [i=1:n] word(files,i) using "epoch":"test_loss" with linespoints lw 2 lc rgb C[1 + (i - 1) % 10] dt 1 title word(titles,i), \
     for [i=1:n] word(files,i) using "epoch":"train_loss" with lines dt 2 lw 2 lc rgb C[1 + (i - 1) % 10] notitle
unset multiplot
