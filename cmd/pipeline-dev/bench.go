package main

import (
	"context"
	"fmt"
	"io"

	"github.com/privacy-pipeline/pipeline/internal/testrig/throughput"
	"github.com/privacy-pipeline/pipeline/internal/testrig/withdrawal"
)

// cmdBench runs 'pipeline-dev bench withdrawal' (the withdrawal latency on
// real services) or 'pipeline-dev bench throughput'.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "throughput" {
		return cmdBenchThroughput(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "withdrawal" {
		return usageError{"bench needs withdrawal or throughput"}
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
// against a fan-out passthrough on the same real broker, interleaved.
func cmdBenchThroughput(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench throughput")
	events := fs.Int("events", 200000, "raw events pre-produced")
	subjects := fs.Int("subjects", 50000, "distinct subjects")
	partitions := fs.Int("partitions", 6, "partitions of every topic")
	rounds := fs.Int("rounds", 3, "interleaved repetitions of the three runs")
	allGranted := fs.Bool("all-granted", false, "grant every subject every purpose (default: the synthetic consent mix)")
	latSeconds := fs.Int("latency-seconds", 10, "measured seconds of each latency phase (25, 50, 80 % of the job's rate, and 50 % with --latency-poll-records); 0 skips the latency part")
	latPoll := fs.Int("latency-poll-records", 0, "MaxPollRecords of the lower-latency setting measured at 50 % against the configured one (0: PIPELINE_MAX_POLL_RECORDS)")
	latLinger := fs.Duration("latency-linger", 0, "producer linger of the lower-latency setting measured at 50 % against PIPELINE_PRODUCER_LINGER (0: no wait)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object on the last line of stdout")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the privacy job's last round to this file")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *events < 1 || *subjects < 1 || *partitions < 1 || *rounds < 1 || *latSeconds < 0 || *latPoll < 0 || *latLinger < 0 {
		return usageError{"--events, --subjects, --partitions and --rounds must be positive, --latency-seconds, --latency-poll-records and --latency-linger not negative"}
	}
	res, err := throughput.Run(ctx, throughput.Options{Events: *events, Subjects: *subjects, Partitions: *partitions, Rounds: *rounds, AllGranted: *allGranted,
		LatencySeconds: *latSeconds, LatencyPollRecords: *latPoll, LatencyLinger: *latLinger, CPUProfile: *cpuProfile, Log: stderr})
	if err != nil {
		return err
	}
	for _, m := range throughput.Modes {
		f := res.Modes[m]
		fmt.Fprintf(stdout, "%-18s %9.0f events/s  %6.1f us CPU/event  peak RSS %5.0f MB\n", m, f.EventsPerS, f.CPUMicrosEvent, f.PeakRSSMB)
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
	if *asJSON {
		return writeJSON(stdout, res)
	}
	return nil
}
