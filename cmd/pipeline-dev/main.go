// Command pipeline-dev holds the development tools that the production
// binary does not ship: the exactly-once chaos test, the withdrawal-latency
// benchmark and the offline k-anonymity evaluation.
//
//	pipeline-dev chaos [--events N] [--kills K] [--binary PATH] [--json]   exactly-once under failures (real Kafka + Redis)
//	pipeline-dev bench withdrawal [--rate N] [--withdrawals N] [--json]     withdrawal latency (real Kafka + Redis)
//	pipeline-dev bench throughput [--events N] [--rounds N] [--json]        the job against a fan-out passthrough (real Kafka + Redis)
//	pipeline-dev bench plot --in FILE [--out PNG]                           the PNG of a throughput result's sweeps
//	pipeline-dev eval kanon --data DIR [--k K] [--json]                     both mechanisms offline on the UCI Adult data set
//
// The chaos test runs its replicas from the production binary (--binary,
// default: a pipeline built with -tags production for the run).
// Configuration comes from PIPELINE_* environment variables (README).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/privacy-pipeline/pipeline/internal/app/cli"
)

func main() {
	cli.Main("pipeline-dev", usage, run, func(err error) bool { var u usageError; return errors.As(err, &u) })
}

const usage = `usage:
  pipeline-dev chaos [--events N] [--kills K] [--subjects N] [--partitions N] [--seed S] [--no-kanon] [--binary PATH] [--json]
  pipeline-dev bench withdrawal [--rate N] [--withdrawals N] [--subjects N] [--json]
  pipeline-dev bench throughput [--events N] [--subjects N] [--partitions N] [--rounds N] [--all-granted | --purposes K]
      [--record-bytes N] [--replicas N] [--kanon=false] [--sweep all|LIST] [--sweep-events N] [--plot FILE] [--json]
  pipeline-dev bench plot --in FILE [--out PNG]
  pipeline-dev eval kanon --data DIR [--k K] [--delta D] [--beta B] [--json]
`

// usageError makes main print the usage and exit 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command"}
	}
	switch args[0] {
	case "chaos":
		return cmdChaos(ctx, args[1:], stdout, stderr)
	case "bench":
		return cmdBench(ctx, args[1:], stdout, stderr)
	case "eval":
		return cmdEval(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func writeJSON(w io.Writer, v any) error { return cli.WriteJSON(w, v) }

func newFlags(name string) *flag.FlagSet { return cli.Flags(name) }
