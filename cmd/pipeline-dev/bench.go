package main

import (
	"context"
	"fmt"
	"io"

	"github.com/privacy-pipeline/pipeline/internal/testrig/withdrawal"
)

// cmdBench runs 'pipeline-dev bench withdrawal': the withdrawal latency on
// real services.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "withdrawal" {
		return usageError{"bench needs withdrawal"}
	}
	fs := newFlags("bench withdrawal")
	rate := fs.Int("rate", 20000, "raw events per second")
	n := fs.Int("withdrawals", 50, "withdrawals to measure")
	subjects := fs.Int("subjects", 2000, "subjects")
	asJSON := fs.Bool("json", false, "print the result as one JSON object on the last line of stdout")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *n < 1 || *n > *subjects || *rate < 1 {
		return usageError{"--withdrawals must be between 1 and --subjects, --rate positive"}
	}
	res, err := withdrawal.Run(ctx, withdrawal.Options{Rate: *rate, Withdrawals: *n, Subjects: *subjects, Log: stderr})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "input %.0f events/s (processed %.0f/s), %d withdrawals: p50 %.0f ms, p99 %.0f ms, max %.0f ms, %d over %.0f ms\n",
		res.RateEPS, res.ProcessedEPS, res.Withdrawals, res.P50Ms, res.P99Ms, res.MaxMs, res.Violations, res.BoundMs)
	return nil
}
