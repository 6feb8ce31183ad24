package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
)

// cmdRun runs 'pipeline run <command>': it loads and validates only the
// command's configuration sections, assembles the command (wiring.NewApp)
// and serves it until SIGTERM or a failure.
func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	want := "run needs " + strings.Join(wiring.Commands, ", ")
	if len(args) == 0 || !slices.Contains(wiring.Commands, args[0]) {
		return usageError{want}
	}
	command := args[0]
	fs := newFlags("run " + command)
	rebuild := fs.Bool("rebuild", false, "consent-sync: restore Redis from the consent topic from scratch first")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *rebuild && command != wiring.CommandConsentSync {
		return usageError{"--rebuild is a flag of consent-sync"}
	}
	cfg, err := config.Load(wiring.Sections(command)...)
	if err != nil {
		return err
	}
	app, err := wiring.NewApp(ctx, command, cfg, wiring.AppOptions{Log: newLogger(stderr, cfg.Ops.LogLevel), Rebuild: *rebuild})
	if err != nil {
		return fmt.Errorf("run %s: %w", command, err)
	}
	return app.Run(ctx)
}
