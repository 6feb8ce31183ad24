package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/kanon/eval"
)

// cmdEval runs 'pipeline-dev eval kanon': both k-anonymity mechanisms offline
// on the UCI Adult data set.
func cmdEval(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "kanon" {
		return usageError{"eval needs kanon"}
	}
	fs := newFlags("eval kanon")
	data := fs.String("data", "", "directory with adult_uci_full.csv and the adult_hierarchy_*.csv files (required)")
	k := fs.Int("k", 0, "evaluate this k only (default: 5, 10, 25, 50, 100)")
	delta := fs.Int("delta", 10000, "CASTLE delay bound in records")
	beta := fs.Int("beta", 50, "CASTLE maximum open clusters")
	mu := fs.Int("mu", 100, "CASTLE tau window (published clusters)")
	dims := fs.String("dims", strings.Join(eval.DefaultAggregateDims, ","), "aggregate dimensions (age and Adult's categorical columns)")
	paper := fs.Bool("paper", true, "also compare CASTLE with the paper's figures (k = 20, 50, 100, 200; 10 and 6 quasi-identifiers)")
	asJSON := fs.Bool("json", false, "print one JSON object as the last line")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *data == "" {
		return usageError{"eval kanon needs --data DIR (e.g. the UCI Adult data set with its ARX hierarchies)"}
	}
	opt := eval.Options{Delta: *delta, Beta: *beta, Mu: *mu, Dims: strings.Split(*dims, ","), Paper: *paper}
	if *k != 0 {
		if *k < 2 {
			return usageError{"--k must be at least 2"}
		}
		opt.Ks = []int{*k}
	}
	rep, err := eval.Run(*data, opt)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "UCI Adult: %d records (%d with missing values dropped); CASTLE delta=%d beta=%d mu=%d on %d quasi-identifiers %v\n",
		rep.Records, rep.Dropped, rep.Delta, rep.Beta, rep.Mu, len(rep.QIs), rep.QIs)
	fmt.Fprintf(stdout, "aggregates by %v: share of records in suppressed cells (before -> after roll-up)\n\n", rep.AggregateDims)
	fmt.Fprintf(stdout, "%5s", "k")
	for _, s := range rep.Results[0].Aggregates.Shares {
		fmt.Fprintf(stdout, " %22s", "agg "+windowName(s.WindowRecords))
	}
	fmt.Fprintf(stdout, " %10s %10s %10s %10s\n", "castle IL", "suppressed", "max delay", "records/s")
	for _, r := range rep.Results {
		fmt.Fprintf(stdout, "%5d", r.K)
		for _, s := range r.Aggregates.Shares {
			fmt.Fprintf(stdout, " %22s", fmt.Sprintf("%.4f -> %.4f", s.SuppressedL0, s.SuppressedRollup))
		}
		fmt.Fprintf(stdout, " %10.4f %10d %10d %10.0f\n", r.Castle.InfoLoss, r.Castle.Suppressed, r.Castle.MaxDelay, r.Castle.RecordsPerSec)
	}
	if len(rep.Paper) > 0 {
		fmt.Fprintf(stdout, "\nCASTLE information loss against Cao et al. (IEEE TDSC 2011), delta=%d beta=%d (greedy split = the product's default; KNN split = the paper's):\n", rep.Delta, rep.Beta)
		for _, c := range rep.Paper {
			qis := "10 QIs"
			if c.NumericOnly {
				qis = "6 numeric QIs"
			}
			fmt.Fprintf(stdout, "  k=%-4d %-14s greedy split %.4f  KNN split %.4f  paper %.3f  ratio %.2f\n", c.K, qis, c.Measured, c.MeasuredKNN, c.InfoLoss, c.Ratio)
		}
	}
	if *asJSON {
		return writeJSON(stdout, rep)
	}
	return nil
}

func windowName(n int) string {
	if n == 0 {
		return "whole file"
	}
	return "window " + strconv.Itoa(n)
}
