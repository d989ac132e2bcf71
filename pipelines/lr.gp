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
# ten distinct colours; runs that share a schedule (all-x and bnonly-x) overlap: the later
# ones are drawn thinner and dashed so both stay visible
array C[10] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
plot for [i=1:words(files)] word(files,i) using "step":"lr" with lines lc rgb C[1 + (i - 1) % 10] \
     lw (i % 2 ? 3 : 1.5) dt 1 + (i + 1) % 2 title word(titles,i)
