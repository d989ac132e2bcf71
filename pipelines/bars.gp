# bars.gp: final test accuracy per variant, ours beside the published figure where there is one.
# gnuplot -e "out='bars.png'; file='bars.tsv'; heading='...'" pipelines/bars.gp
# file: TSV with a header, columns variant, ours, published (accuracies in %, "-" = none).
set terminal pngcairo size 1000,520 font ",11"
set output out
set title heading
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set ylabel "test accuracy (%)"
set yrange [0:105]
set grid ytics
set key top left
set xtics rotate by -30 noenhanced
nrows = int(system("awk 'NR > 1' '".file."' | wc -l"))
set xrange [-0.6:nrows - 0.4]
np = int(system("awk -F'\t' 'NR > 1 && $3 != \"-\"' '".file."' | wc -l"))
if (np > 0) {
  plot file skip 1 using 2:xtic(1) title "ours" lc rgb "#1f77b4", \
       '' skip 1 using 3 title "published" lc rgb "#ff7f0e", \
       '' skip 1 using 0:($2):(sprintf("%.1f", $2)) with labels offset -1.2,0.6 notitle
} else {
  plot file skip 1 using 2:xtic(1) title "ours (nothing published to compare)" lc rgb "#1f77b4", \
       '' skip 1 using 0:($2):(sprintf("%.1f", $2)) with labels offset 0,0.6 notitle
}
