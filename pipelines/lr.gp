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
plot for [i=1:words(files)] word(files,i) using "step":"lr" with lines lw 2 lc i title word(titles,i)
