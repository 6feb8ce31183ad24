//go:build !production

package main

import (
	"context"
	"fmt"
	"io"

	"github.com/privacy-pipeline/pipeline/internal/testrig/demo"
)

// cmdDemo runs 'pipeline demo': the whole pipeline on in-process Kafka
// (kfake) and Redis (miniredis), with synthetic events and consent.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo")
	events := fs.Int("events", 20000, "raw events to produce (malformed ones included)")
	subjects := fs.Int("subjects", 3000, "synthetic subjects with seeded consent")
	asJSON := fs.Bool("json", false, "print the accounting as one JSON object on the last line of stdout")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *events < 1 || *subjects < 1 {
		return usageError{"--events and --subjects must be positive"}
	}
	res, err := demo.Run(ctx, demo.Options{Events: *events, Subjects: *subjects, Out: stdout,
		Log: newLogger(stderr, "warn")})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "\naccounting holds: for every purpose, published + denied = events_in - quarantined\n")
	return nil
}
