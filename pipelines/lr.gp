# lr.gp: learning rate vs optimizer step of several runs (net-lr output: step, epoch, lr).
# gnuplot -e "out='lr.png'; files='a.lr.tsv b.lr.tsv'; titles='a b'; heading='...'" pipelines/lr.gp
set terminal pngcairo size 1100,560 font ",11"
set output out
set title heading noenhanced
set datafile separator "\t"
set key outside right noenhanced
set xlabel "optimizer step"
set ylabel "learning rate"
set logscale y
set format y "%.0e"
set grid
# ten distinct colours; runs that share a schedule (all-x and bnonly-x, not always next to
# each other) overlap: "all" runs are drawn solid, the others dashed, and each run thinner
# than the one before it, so a later line lies inside an earlier one and both stay visible
array C[10] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
n = words(files)
plot for [i=1:n] word(files,i) using "step":"lr" with lines lc rgb C[1 + (i - 1) % 10] \
     lw 1.5 + 4.0 * (n - i) / n dt 1 + (word(titles,i)[1:3] eq "all" ? 0 : 1) title word(titles,i)
