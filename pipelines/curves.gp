# curves.gp: train/test accuracy and loss vs epoch of several runs' metrics TSV (net-train --log).
# gnuplot -e "out='curves.png'; files='a.tsv b.tsv'; titles='all bnonly'; heading='...'" pipelines/curves.gp
# optional: w, h (picture size, default 1200x480), fs (font size, 11)
if (!exists("w")) w = 1200
if (!exists("h")) h = 480
if (!exists("fs")) fs = 11
set terminal pngcairo size w,h font ",".fs
set output out
set key autotitle columnhead bottom right
set multiplot layout 1,2 title heading noenhanced
set xlabel "epoch"; set ylabel "accuracy"; set yrange [0:1]; set grid
set title "accuracy (solid: test, dashed: train)"
plot for [i=1:words(files)] word(files,i) using "epoch":"test_acc" with linespoints lw 2 lc i title word(titles,i)." test", \
     for [i=1:words(files)] word(files,i) using "epoch":"train_acc" with lines dt 2 lw 2 lc i title word(titles,i)." train"
set ylabel "cross-entropy loss"; set autoscale y
set title "loss (solid: test, dashed: train)"
set key top right
plot for [i=1:words(files)] word(files,i) using "epoch":"test_loss" with linespoints lw 2 lc i title word(titles,i)." test", \
     for [i=1:words(files)] word(files,i) using "epoch":"train_loss" with lines dt 2 lw 2 lc i title word(titles,i)." train"
unset multiplot
