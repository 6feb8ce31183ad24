package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestEvalKanonUsage(t *testing.T) {
	var out bytes.Buffer
	for _, args := range [][]string{{"eval"}, {"eval", "kanon"}, {"eval", "kanon", "--data", "x", "--k", "1"}} {
		err := run(context.Background(), args, &out, &out)
		var u usageError
		if !errors.As(err, &u) {
			t.Errorf("%v: want a usage error, got %v", args, err)
		}
	}
	if err := run(context.Background(), []string{"eval", "kanon", "--data", t.TempDir()}, &out, &out); err == nil {
		t.Error("an empty data directory was accepted")
	}
}

func TestChaosUsage(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"chaos", "--events", "10"}, &out, &out)
	var u usageError
	if !errors.As(err, &u) {
		t.Errorf("want a usage error, got %v", err)
	}
}
