package main

import (
	"context"
	"fmt"
	"io"

	"github.com/privacy-pipeline/pipeline/internal/testrig/chaos"
)

func cmdChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("chaos")
	events := fs.Int("events", 500000, "raw events to produce")
	kills := fs.Int("kills", 0, "replicas to SIGKILL during the run (default max(3, events/40000))")
	subjects := fs.Int("subjects", 5000, "synthetic subjects")
	partitions := fs.Int("partitions", 6, "partitions of every topic")
	seed := fs.Uint64("seed", 0, "random seed (0: random)")
	noKanon := fs.Bool("no-kanon", false, "leave out the k-anonymity processors")
	asJSON := fs.Bool("json", false, "print the result as one JSON object on the last line of stdout")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *events < 100 {
		return usageError{"--events must be at least 100"}
	}
	res, err := chaos.Run(ctx, chaos.Options{Events: *events, Kills: *kills, Subjects: *subjects,
		Partitions: *partitions, Seed: *seed, Log: stderr, NoKanon: *noKanon})
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
