// Package cli holds the few helpers that the pipeline's commands
// (cmd/pipeline, cmd/pipeline-dev) share: flag sets that report instead of
// printing, the JSON logger and one-line JSON results.
//
// It imports only the standard library.
package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
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
