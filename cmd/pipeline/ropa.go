package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/ropa"
	"github.com/privacy-pipeline/pipeline/topology"
)

// repeated is a flag that may be given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, "; ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// cmdRopa prints the record of processing activities (GDPR Art. 30)
// derived from the configured schema, policy, kanon.json and topology;
// --out writes it to a file, --check fails when a file differs from it.
func cmdRopa(args []string, stdout io.Writer) error {
	fs := newFlags("ropa")
	format := fs.String("format", "md", "md (Markdown) or json")
	out := fs.String("out", "", "write the record to this file instead of standard output")
	check := fs.String("check", "", "compare this file with the record and fail when it is stale")
	controller := fs.String("controller", "", "the controller's name (default: a placeholder)")
	contact := fs.String("contact", "", "the controller's contact details (default: a placeholder)")
	dpo := fs.String("dpo", "", "the data protection officer's contact (default: a placeholder)")
	aclFile := fs.String("acls", "", "ACL file (deploy/acls.example.json): list its consumer principals as recipients")
	var transfers repeated
	fs.Var(&transfers, "transfer", "a transfer to a third country or international organisation, with its safeguards (repeatable; default: none declared)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *format != "md" && *format != "json" {
		return usageError{"ropa --format is md or json"}
	}
	if fs.NArg() > 0 {
		return usageError{"ropa takes no arguments"}
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	raw, pol, err := wiring.LoadPolicy(cfg)
	if err != nil {
		return err
	}
	names, err := wiring.Names(cfg)
	if err != nil {
		return err
	}
	t, err := wiring.Topology(cfg, topology.Options{})
	if err != nil {
		return err
	}
	in := ropa.Inputs{Controller: ropa.Controller{Name: *controller, Contact: *contact, DPO: *dpo}, Transfers: transfers,
		Raw: raw, Policy: pol, Names: names, Topology: t}
	if *aclFile != "" {
		spec, err := topology.ReadACLSpec(*aclFile)
		if err != nil {
			return err
		}
		if err := spec.Validate(t); err != nil {
			return fmt.Errorf("%s: %w", *aclFile, err)
		}
		in.ACLs = &spec
	}
	rec, err := ropa.Build(in)
	if err != nil {
		return err
	}
	doc := rec.Markdown()
	if *format == "json" {
		doc = rec.JSON()
	}
	switch {
	case *check != "":
		got, err := os.ReadFile(*check)
		if err != nil || !bytes.Equal(got, doc) {
			return fmt.Errorf("stale record of processing activities %s: run 'make schemas'", *check)
		}
		fmt.Fprintf(stdout, "%s is up to date\n", *check)
		return nil
	case *out != "":
		if err := os.WriteFile(*out, doc, 0o644); err != nil {
			return fmt.Errorf("ropa: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s (%d purposes, %d fields, %d topics)\n", *out, len(rec.Purposes), len(rec.PersonalData), len(rec.Topics))
		return nil
	}
	_, err = stdout.Write(doc)
	return err
}
