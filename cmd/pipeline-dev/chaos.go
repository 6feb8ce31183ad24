package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/privacy-pipeline/pipeline/internal/testrig/chaos"
)

// cmdChaos runs 'pipeline-dev chaos': the exactly-once test with replicas
// as OS processes, SIGKILLs, scaling and service restarts.
func cmdChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("chaos")
	events := fs.Int("events", 500000, "raw events to produce")
	kills := fs.Int("kills", 0, "replicas to SIGKILL during the run (default max(3, events/40000))")
	subjects := fs.Int("subjects", 5000, "synthetic subjects")
	partitions := fs.Int("partitions", 6, "partitions of every topic")
	seed := fs.Uint64("seed", 0, "random seed (0: random)")
	noKanon := fs.Bool("no-kanon", false, "leave out the k-anonymity processors")
	binary := fs.String("binary", "", "the pipeline binary the replicas run (default: build ./cmd/pipeline with -tags production for this run)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object on the last line of stdout")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *events < 100 {
		return usageError{"--events must be at least 100"}
	}
	if *binary == "" {
		dir, err := os.MkdirTemp("", "pipeline-chaos-")
		if err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		defer os.RemoveAll(dir)
		if *binary, err = buildProduction(ctx, dir, stderr); err != nil {
			return err
		}
	}
	res, err := chaos.Run(ctx, chaos.Options{Events: *events, Kills: *kills, Subjects: *subjects,
		Partitions: *partitions, Seed: *seed, Log: stderr, NoKanon: *noKanon, Binary: *binary})
	if err != nil {
		return err
	}
	if *asJSON {
		if err := writeJSON(stdout, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%d events, %d kills, up to %d replicas, Redis and Kafka restarted once, %.1fs\n", res.Events, res.Kills, res.MaxReplicas, res.ElapsedS)
		for p, r := range res.Purposes {
			fmt.Fprintf(stdout, "%-22s expected %7d published %7d missing %d duplicated %d wrongly published %d\n", p, r.Expected, r.Published, r.Missing, r.Duplicated, r.WronglyPublished)
		}
		if a := res.Audit; a != nil {
			fmt.Fprintf(stdout, "audit: %d batch records summarise %d of %d raw records; overlapping ranges %d, purposes whose published total differs %d\n",
				a.Records, a.Events, a.Expected, a.Overlaps, a.PublishedDiffer)
		}
		if k := res.Kanon; k != nil {
			fmt.Fprintf(stdout, "k-anonymity: %d aggregate rows (offline run %d; missing %d, duplicated %d, different %d); %d of %d records anonymised in %d groups (offline run %d; extra %d, missing %d; linked to one clean record %d); under k: %d\n",
				k.Rows, k.Expected, k.Missing, k.Duplicated, k.Different, k.Records, k.Input, k.Groups, k.RecordsExpected, k.RecordsExtra, k.RecordsMissing, k.LinkedUnique, k.UnderK)
		}
	}
	if !res.OK() {
		return fmt.Errorf("chaos: exactly-once violated (see the counts above)")
	}
	return nil
}

// buildProduction builds the production pipeline binary (what the deploy
// image ships) into dir, so the chaos replicas run exactly that.
func buildProduction(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	out := filepath.Join(dir, "pipeline")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "production", "-o", out, "github.com/privacy-pipeline/pipeline/cmd/pipeline")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("chaos: build the pipeline binary (run inside the module, or pass --binary): %w", err)
	}
	return out, nil
}
