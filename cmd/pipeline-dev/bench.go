package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/testrig/throughput"
	"github.com/privacy-pipeline/pipeline/internal/testrig/withdrawal"
)

// cmdBench runs 'pipeline-dev bench withdrawal' (the withdrawal latency on
// real services) or 'pipeline-dev bench throughput'.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "throughput" {
		return cmdBenchThroughput(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "plot" {
		return cmdBenchPlot(args[1:], stdout)
	}
	if len(args) == 0 || args[0] != "withdrawal" {
		return usageError{"bench needs withdrawal, throughput or plot"}
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

// cmdBenchThroughput runs 'pipeline-dev bench throughput': the privacy job
// against a fan-out passthrough on the same real broker, interleaved; the
// k-anonymity processors on the job's output; with --sweep, how the cost
// grows (each point a short run), and with --plot a PNG of the sweeps.
func cmdBenchThroughput(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench throughput")
	events := fs.Int("events", 200000, "raw events pre-produced")
	subjects := fs.Int("subjects", 50000, "distinct subjects")
	partitions := fs.Int("partitions", 6, "partitions of every topic")
	rounds := fs.Int("rounds", 3, "interleaved repetitions of the runs (0: the sweeps only)")
	allGranted := fs.Bool("all-granted", false, "grant every subject every purpose (default: the synthetic consent mix)")
	purposes := fs.Int("purposes", 0, "grant every subject only the first N purposes, 1-5 (N clean records per event)")
	recordBytes := fs.Int("record-bytes", 0, "raw event size to aim for, e.g. 200-4096 (the free-text message padded)")
	replicas := fs.Int("replicas", 0, "runner instances of the runner modes in this process, one group (0: one)")
	kanon := fs.Bool("kanon", true, "also run the k-anonymity processors on the job's output (mode d)")
	latSeconds := fs.Int("latency-seconds", 10, "measured seconds of each latency phase (25, 50, 80 % of the job's rate, and 50 % with the lower-latency setting); 0 skips the latency part")
	latPoll := fs.Int("latency-poll-records", 0, "MaxPollRecords of the lower-latency setting measured at 50 % against the configured one (0: PIPELINE_MAX_POLL_RECORDS)")
	latLinger := fs.Duration("latency-linger", 0, "producer linger of the lower-latency setting measured at 50 % against PIPELINE_PRODUCER_LINGER (0: no wait)")
	sweep := fs.String("sweep", "", "also run the sweeps: all, or some of "+strings.Join(throughput.Sweeps, ","))
	sweepEvents := fs.Int("sweep-events", 100000, "raw events per sweep point")
	sweepRounds := fs.Int("sweep-rounds", 1, "rounds per sweep point (medians)")
	plot := fs.String("plot", "", "write a PNG of the sweeps to this file")
	asJSON := fs.Bool("json", false, "print the result as one JSON object on the last line of stdout")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the privacy job's last round to this file")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *events < 1 || *subjects < 1 || *partitions < 1 || *rounds < 0 || (*rounds == 0 && *sweep == "") {
		return usageError{"--events, --subjects, --partitions and --rounds must be positive (--rounds 0 only with --sweep)"}
	}
	if *purposes < 0 || *purposes > 5 || *recordBytes < 0 || *replicas < 0 || *sweepEvents < 1 || *sweepRounds < 1 {
		return usageError{"--purposes must be 0-5, --record-bytes and --replicas not negative, --sweep-events and --sweep-rounds positive"}
	}
	if *latSeconds < 0 || *latPoll < 0 || *latLinger < 0 {
		return usageError{"--latency-seconds, --latency-poll-records and --latency-linger must not be negative"}
	}
	var sweeps []string
	if *sweep != "" {
		var err error
		if sweeps, err = throughput.ParseSweeps(*sweep); err != nil {
			return usageError{err.Error()}
		}
	}
	var res throughput.Result
	if *rounds > 0 {
		var err error
		res, err = throughput.Run(ctx, throughput.Options{Events: *events, Subjects: *subjects, Partitions: *partitions, Rounds: *rounds,
			AllGranted: *allGranted, Purposes: *purposes, RecordBytes: *recordBytes, Replicas: *replicas, Kanon: *kanon,
			LatencySeconds: *latSeconds, LatencyPollRecords: *latPoll, LatencyLinger: *latLinger, CPUProfile: *cpuProfile, Log: stderr})
		if err != nil {
			return err
		}
		for _, m := range res.OrderedModes() {
			f := res.Modes[m]
			unit := "events"
			if slices.Contains(throughput.KanonModes, m) {
				unit = "records"
			}
			fmt.Fprintf(stdout, "%-18s %9.0f %s/s  %6.1f us CPU/%s  peak RSS %5.0f MB  Redis %6.1f round trips/1000 events",
				m, f.EventsPerS, unit, f.CPUMicrosEvent, strings.TrimSuffix(unit, "s"), f.PeakRSSMB, f.RedisRoundTrips)
			if m == throughput.Job {
				fmt.Fprintf(stdout, "  consent cache hit rate %.3f", f.CacheHitRate)
			}
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "job / passthrough-tx %.2f, job / passthrough-no-tx %.2f, CPU per event job / passthrough-tx %.2fx (medians of %d rounds)\n",
			res.JobOverPassthroughTx, res.JobOverPassthroughNoTx, res.JobCPUOverPassthroughTx, res.Rounds)
		if l := res.Latency; l != nil {
			fmt.Fprintf(stdout, "end-to-end latency, raw produce to read_committed clean record (%.0f s per load after %.0f s warm-up; 100 %% = %.0f events/s):\n",
				l.Seconds, l.WarmupSeconds, l.MaxEventsPerS)
			fmt.Fprintf(stdout, "%-11s %5s %6s %5s %8s %8s %9s %8s %8s %8s %8s\n", "setting", "poll", "linger", "load", "target/s", "actual/s", "measured", "p50 ms", "p99 ms", "p999 ms", "max ms")
			for _, r := range l.Runs {
				fmt.Fprintf(stdout, "%-11s %5d %4.0fms %4.0f%% %8.0f %8.0f %9d %8.1f %8.1f %8.1f %8.1f\n",
					r.Setting, r.MaxPollRecords, r.LingerMs, r.Fraction*100, r.TargetEPS, r.AchievedEPS, r.Measured, r.P50Ms, r.P99Ms, r.P999Ms, r.MaxMs)
			}
		}
	}
	if len(sweeps) > 0 {
		sc, err := throughput.Sweep(ctx, throughput.SweepOptions{Sweeps: sweeps, Events: *sweepEvents, Rounds: *sweepRounds, Subjects: *subjects, Partitions: *partitions, Log: stderr})
		res.Scaling = sc
		if err != nil {
			if sc == nil || len(sc.Points) == 0 {
				return err
			}
			fmt.Fprintf(stderr, "bench throughput: %v (the points before it are kept)\n", err)
		}
		sc.WriteTable(stdout)
	}
	if *plot != "" {
		if err := throughput.PlotFile(res, *plot); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench throughput: plot written to %s\n", *plot)
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	return nil
}

// cmdBenchPlot runs 'pipeline-dev bench plot': the PNG of a throughput
// result's sweeps, from its JSON (a file whose last JSON line is the
// result, as --json prints it).
func cmdBenchPlot(args []string, stdout io.Writer) error {
	fs := newFlags("bench plot")
	in := fs.String("in", "", "the JSON of 'bench throughput --json' (its output; the last line that is a JSON object is read)")
	out := fs.String("out", "docs/bench-throughput.png", "the PNG to write")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *in == "" {
		return usageError{"bench plot needs --in FILE"}
	}
	b, err := os.ReadFile(*in)
	if err != nil {
		return fmt.Errorf("bench plot: %w", err)
	}
	res, err := throughput.ReadResult(b)
	if err != nil {
		return fmt.Errorf("bench plot: %s: %w", *in, err)
	}
	if err := throughput.PlotFile(res, *out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", *out)
	return nil
}
