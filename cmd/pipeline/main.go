// Command pipeline runs the privacy pipeline.
//
//	pipeline demo [--events N] [--subjects N] [--json]   zero-setup demo (in-process Kafka and Redis)
//	pipeline run privacy                                  the privacy processor (PIPELINE_* env)
//	pipeline run consent-sync [--rebuild]                 materialise privacy.consent into Redis
//	pipeline run consent-api                              the consent HTTP API
//	pipeline run kanon                                    k-anonymous aggregates (agg.<purpose>.<name>)
//	pipeline run kanon-records                            record-level k-anonymisation (CASTLE, clean.<purpose>.kanon)
//	pipeline topology describe|apply [--mermaid|--acls]  the declared topics, processors and Kafka ACLs
//	pipeline schemas generate|check [--dir schemas]       derived clean schemas
//	pipeline policy validate [--file F]                   check a policy file
//	pipeline ropa [--format md|json] [--out F|--check F]  the record of processing activities (GDPR Art. 30)
//	pipeline keys generate --out FILE                     a new pseudonym keyring (secrets only in the file)
//	pipeline config print                                 the effective configuration (PIPELINE_* lines, secrets redacted)
//	pipeline erase --subject ID [--request ID]            erase a data subject (crypto-shredding, tombstones, notices)
//
// Configuration comes from PIPELINE_* environment variables (README).
//
// The deploy image builds it with -tags production, which leaves the demo
// (and with it kfake, miniredis and the synthetic data) out of the binary.
// The chaos test, the benchmarks and the offline evaluation are in a
// separate binary, cmd/pipeline-dev.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/privacy-pipeline/pipeline/internal/app/cli"
)

func main() {
	cli.Main("pipeline", usage, run, func(err error) bool { var u usageError; return errors.As(err, &u) })
}

const usage = `usage:
  pipeline demo [--events N] [--subjects N] [--json]
  pipeline run privacy | consent-sync [--rebuild] | consent-api | kanon | kanon-records
  pipeline topology describe [--mermaid | --acls FILE] | apply [--partitions N] [--replication N] [--acls FILE]
  pipeline schemas generate|check [--dir DIR]
  pipeline policy validate [--file FILE]
  pipeline ropa [--format md|json] [--out FILE | --check FILE] [--controller NAME] [--contact TEXT] [--dpo TEXT] [--transfer TEXT]... [--acls FILE]
  pipeline keys generate --out FILE [--id SUFFIX] [--force | --keep-if-exists] | check --file FILE
  pipeline keys kek new|rotate --out FILE      the key-encryption key of the per-subject data keys
  pipeline keys link new|rotate --out FILE     the key sealing the privacy center's customer links
  pipeline keys ledger new --out FILE          the erasure ledger's key
  pipeline erase --subject ID [--request ID]   erase a data subject (needs PIPELINE_ERASURE_KEY_FILE)
  pipeline api-token new --principals FILE --principal NAME --scopes LIST --out TOKENFILE [--expires D] [--keep-if-exists]
  pipeline api-token revoke --principals FILE --principal NAME
  pipeline probe URL            exit 0 when URL answers 200 (container health checks)
  pipeline config print         the effective configuration, secrets redacted
`

// usageError makes main print the usage and exit 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command"}
	}
	switch args[0] {
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "run":
		return cmdRun(ctx, args[1:], stderr)
	case "topology":
		return cmdTopology(ctx, args[1:], stdout)
	case "schemas":
		return cmdSchemas(args[1:], stdout)
	case "policy":
		return cmdPolicy(args[1:], stdout)
	case "ropa":
		return cmdRopa(args[1:], stdout)
	case "keys":
		return cmdKeys(args[1:], stdout)
	case "api-token":
		return cmdAPIToken(args[1:], stdout)
	case "eval", "bench", "chaos":
		return usageError{fmt.Sprintf("%s moved to the development binary: go run ./cmd/pipeline-dev %s", args[0], args[0])}
	case "probe":
		return cmdProbe(ctx, args[1:])
	case "config":
		return cmdConfig(args[1:], stdout)
	case "erase":
		return cmdErase(ctx, args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func newLogger(w io.Writer, level string) *slog.Logger { return cli.Logger(w, level) }

func writeJSON(w io.Writer, v any) error { return cli.WriteJSON(w, v) }

func newFlags(name string) *flag.FlagSet { return cli.Flags(name) }
