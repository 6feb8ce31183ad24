package serve

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitFor polls cond with a generous deadline (no timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShutdownWaitsForEveryService: SIGTERM (ctx) stops the services and
// Run returns only after each has returned (a runner finishing its
// transaction), with no error.
func TestShutdownWaitsForEveryService(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stopped atomic.Int32
	slow := func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // the open transaction
		stopped.Add(1)
		return ctx.Err()
	}
	var ready atomic.Bool
	bound := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Addr: "127.0.0.1:0", Registry: prometheus.NewRegistry(), Bound: bound},
			Func("a", slow, ready.Load), Func("b", slow, nil))
	}()
	addr := <-bound
	if c := get(t, "http://"+addr+"/readyz"); c != http.StatusServiceUnavailable {
		t.Errorf("readyz with a service not ready: %d", c)
	}
	ready.Store(true)
	if c := get(t, "http://"+addr+"/readyz"); c != http.StatusOK {
		t.Errorf("readyz with every service ready: %d", c)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown returned %v", err)
	}
	if stopped.Load() != 2 {
		t.Fatalf("Run returned before both services stopped (%d)", stopped.Load())
	}
}

// TestOneFailureStopsTheOthers: a service that fails (lost its store,
// fenced) stops the command instead of leaving a half-alive process.
func TestOneFailureStopsTheOthers(t *testing.T) {
	boom := errors.New("fenced")
	var otherStopped atomic.Bool
	err := Run(context.Background(), Options{Addr: "127.0.0.1:0", Registry: prometheus.NewRegistry()},
		Func("failing", func(context.Context) error { return boom }, nil),
		Func("other", func(ctx context.Context) error { <-ctx.Done(); otherStopped.Store(true); return nil }, nil))
	if !errors.Is(err, boom) || err.Error() != "failing: fenced" {
		t.Fatalf("want the failure named by its service, got %v", err)
	}
	if !otherStopped.Load() {
		t.Fatal("the other service was not stopped")
	}
}

// TestPortTakenFails: a second process on the same ops port fails at once
// rather than running without its endpoints.
func TestPortTakenFails(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bound := make(chan string, 1)
	go func() { _ = Run(ctx, Options{Addr: "127.0.0.1:0", Registry: prometheus.NewRegistry(), Bound: bound}) }()
	addr := <-bound
	var ran atomic.Bool
	err := Run(context.Background(), Options{Addr: addr, Registry: prometheus.NewRegistry()},
		Func("svc", func(ctx context.Context) error { ran.Store(true); <-ctx.Done(); return nil }, nil))
	if err == nil {
		t.Fatal("a taken port was accepted")
	}
	waitFor(t, "the service to have been started and stopped", ran.Load)
}

// TestMountedHandlers: the consent API mounts /v1/ beside the endpoints.
func TestMountedHandlers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	bound := make(chan string, 1)
	done := make(chan error, 1)
	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	go func() {
		done <- Run(ctx, Options{Addr: "127.0.0.1:0", Registry: prometheus.NewRegistry(), Bound: bound,
			Mount: map[string]http.Handler{"/v1/": api}, Ready: func() bool { return false }})
	}()
	addr := <-bound
	if c := get(t, "http://"+addr+"/v1/x"); c != http.StatusTeapot {
		t.Errorf("/v1/: %d", c)
	}
	if c := get(t, "http://"+addr+"/metrics"); c != http.StatusOK {
		t.Errorf("/metrics: %d", c)
	}
	if c := get(t, "http://"+addr+"/readyz"); c != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Options.Ready false: %d", c)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
