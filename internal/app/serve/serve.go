// Package serve runs a command's services under one lifecycle: the
// services and the operational endpoints (/metrics, /healthz, /readyz,
// plus any handlers the command mounts) start together; the first service
// that fails stops the others; SIGTERM (the context) stops them all, and
// Run returns only when every service has returned, so a runner can finish
// or abort its open transaction and leave its group first.
//
// It imports golang.org/x/sync/errgroup, prometheus/client_golang (through
// internal/stream/opsserver) and the standard library.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/privacy-pipeline/pipeline/internal/stream/opsserver"
)

// Service is one long-running part of a command: a runner, a consent
// sync, a follower of a side channel.
type Service interface {
	// Name names the service in logs and errors.
	Name() string
	// Run works until ctx ends (then it returns nil or ctx's error) or it
	// fails.
	Run(ctx context.Context) error
	// Ready reports whether the service can do its job now (/readyz).
	Ready() bool
}

// Func adapts a run function and a readiness probe (nil: always ready) to
// a Service.
func Func(name string, run func(context.Context) error, ready func() bool) Service {
	return funcService{name, run, ready}
}

type funcService struct {
	name  string
	run   func(context.Context) error
	ready func() bool
}

func (f funcService) Name() string                  { return f.name }
func (f funcService) Run(ctx context.Context) error { return f.run(ctx) }
func (f funcService) Ready() bool                   { return f.ready == nil || f.ready() }

// Options configure Run.
type Options struct {
	// Addr is where the operational endpoints listen.
	Addr string
	// Registry is served at /metrics.
	Registry prometheus.Gatherer
	// Mount adds handlers beside the operational endpoints (the consent
	// API mounts /v1/).
	Mount map[string]http.Handler
	// TLS, when set, serves the endpoints over TLS (the consent API).
	TLS *tls.Config
	// Ready, when set, replaces the default readiness (every service
	// ready).
	Ready func() bool
	// Bound, when set, receives the listening address (tests use ":0").
	Bound chan<- string
	// Log receives the start and stop lines.
	Log *slog.Logger
}

// Run runs the services and the endpoints until ctx ends or a service
// fails. It returns nil after a shutdown by ctx and the first failure
// otherwise.
func Run(ctx context.Context, opt Options, services ...Service) error {
	ready := opt.Ready
	if ready == nil {
		ready = func() bool {
			for _, s := range services {
				if !s.Ready() {
					return false
				}
			}
			return true
		}
	}
	var h http.Handler = opsserver.Handler(opt.Registry, ready)
	if len(opt.Mount) > 0 {
		mux := http.NewServeMux()
		for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
			mux.Handle(p, h)
		}
		for p, mh := range opt.Mount {
			mux.Handle(p, mh)
		}
		h = mux
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := opsserver.Serve(gctx, opt.Addr, h, opt.TLS, opt.Bound); err != nil {
			return fmt.Errorf("serve %s: %w", opt.Addr, err)
		}
		return nil
	})
	for _, s := range services {
		g.Go(func() error {
			if err := s.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", s.Name(), err)
			}
			return nil
		})
	}
	err := g.Wait()
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
