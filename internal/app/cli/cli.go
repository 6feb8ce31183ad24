// Package cli holds the few helpers that the pipeline's commands
// (cmd/pipeline, cmd/pipeline-dev) share: flag sets that report instead of
// printing, the JSON logger, one-line JSON results and the main function
// (signals, exit codes).
//
// It imports only the standard library.
package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Flags returns a flag set that returns parse errors instead of printing
// them or exiting.
func Flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// Logger returns a JSON logger at the named level (info when the name is
// not a slog level).
func Logger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// WriteJSON writes v as one line of JSON.
func WriteJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// Main runs a command's run function with a context that SIGINT and
// SIGTERM cancel, and exits: 0 on success, 2 after printing usage when
// isUsage says the error is a wrong invocation, 1 otherwise. Errors are
// printed prefixed with the command's name.
func Main(name, usage string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error, isUsage func(error) bool) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, name+":", err)
	if isUsage(err) {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	os.Exit(1)
}
