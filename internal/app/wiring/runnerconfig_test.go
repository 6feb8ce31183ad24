package wiring

import (
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
)

// TestRunnerLinger: PIPELINE_PRODUCER_LINGER reaches the runner, 0 as no
// wait (negative for runner.Config, whose zero is its 5ms default).
func TestRunnerLinger(t *testing.T) {
	var cfg config.Config
	cfg.Runner.ProducerLinger = 20 * time.Millisecond
	if got := RunnerConfig(cfg, "g", "in", nil).ProducerLinger; got != 20*time.Millisecond {
		t.Fatalf("linger %v", got)
	}
	cfg.Runner.ProducerLinger = 0
	if got := RunnerConfig(cfg, "g", "in", nil).ProducerLinger; got >= 0 {
		t.Fatalf("no linger became %v", got)
	}
}
