package ropa

import (
	"bytes"
	"fmt"
)

// Files are the checked-in derived record files, relative to the
// repository root.
const (
	MarkdownFile = "docs/ropa.md"
	JSONFile     = "docs/ropa.json"
)

// Check compares checked-in record files with the record derived from in
// and names each stale one: the staleness check of 'pipeline ropa --check'
// and TestRecordUpToDate.
func Check(in Inputs, markdown, jsonDoc []byte) error {
	r, err := Build(in)
	if err != nil {
		return err
	}
	var stale []string
	if !bytes.Equal(markdown, r.Markdown()) {
		stale = append(stale, MarkdownFile)
	}
	if !bytes.Equal(jsonDoc, r.JSON()) {
		stale = append(stale, JSONFile)
	}
	if len(stale) > 0 {
		return fmt.Errorf("ropa: stale record of processing activities %v: run 'make schemas' (or go test ./internal/ropa -run TestRecordUpToDate -update)", stale)
	}
	return nil
}
