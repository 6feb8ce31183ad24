//go:build production

package main

import (
	"context"
	"fmt"
	"io"
)

// cmdDemo in the production build: the demo's in-process Kafka and Redis
// and its synthetic data are not linked into the image.
func cmdDemo(context.Context, []string, io.Writer, io.Writer) error {
	return fmt.Errorf("this is the production build (-tags production), which leaves the demo out: run it from the source tree with 'go run ./cmd/pipeline demo'")
}
