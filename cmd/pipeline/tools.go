package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/schemas"
	"github.com/privacy-pipeline/pipeline/topology"
)

func declared(cfg config.Config, partitions, replication int) (topology.Topology, error) {
	return wiring.Topology(cfg, topology.Options{Partitions: int32(partitions), Replication: int16(replication)})
}

func cmdTopology(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"topology needs describe or apply"}
	}
	fs := newFlags("topology")
	mermaid := fs.Bool("mermaid", false, "print only the Mermaid graph")
	partitions := fs.Int("partitions", 12, "partitions of the raw, consent and clean topics")
	replication := fs.Int("replication", 3, "replication factor (1 for a single broker)")
	aclFile := fs.String("acls", "", "ACL file (deploy/acls.example.json): describe prints the ACLs it derives; apply reconciles them after the topics")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if args[0] != "describe" && args[0] != "apply" {
		return usageError{"topology needs describe or apply"}
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	t, err := declared(cfg, *partitions, *replication)
	if err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return err
	}
	// The ACL file is checked before anything changes.
	var acls *topology.ACLSpec
	if *aclFile != "" {
		spec, err := topology.ReadACLSpec(*aclFile)
		if err != nil {
			return err
		}
		if err := spec.Validate(t); err != nil {
			return fmt.Errorf("%s: %w", *aclFile, err)
		}
		acls = &spec
	}
	if args[0] == "describe" {
		switch {
		case acls != nil:
			desired, err := topology.DesiredACLs(t, *acls)
			if err != nil {
				return err
			}
			for _, a := range desired {
				fmt.Fprintln(stdout, a)
			}
			if acls.Admin != "" {
				fmt.Fprintf(stdout, "# admin %s applies them: a super user, or ALTER on the cluster\n", acls.Admin)
			}
		case *mermaid:
			fmt.Fprint(stdout, t.Mermaid())
		default:
			fmt.Fprint(stdout, t.Table())
			fmt.Fprintf(stdout, "\n```mermaid\n%s```\n", t.Mermaid())
		}
		return nil
	}
	// Schemas first: a change the registry refuses stops the apply
	// before anything changes in Kafka.
	srep, done, err := wiring.ApplySchemas(ctx, cfg)
	fmt.Fprint(stdout, srep.String())
	if err != nil {
		return err
	}
	if !done {
		fmt.Fprintln(stdout, "schemas: single-object encoding and no schema registry configured; nothing registered")
	}
	adm, err := cfg.Kafka.NewAdmin()
	if err != nil {
		return err
	}
	defer adm.Close()
	rep, err := topology.Apply(ctx, adm, t)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, rep.String())
	var drift []error
	if len(rep.Drift) > 0 {
		drift = append(drift, fmt.Errorf("topology: %d differences could not be fixed", len(rep.Drift)))
	}
	// ACLs after the topics, so they name topics that exist.
	if acls != nil {
		arep, err := topology.ApplyACLs(ctx, adm, t, *acls)
		fmt.Fprint(stdout, arep.String())
		if err != nil {
			return err
		}
		if len(arep.Drift) > 0 {
			drift = append(drift, fmt.Errorf("topology: %d ACLs are drift (not fixed)", len(arep.Drift)))
		}
	}
	return errors.Join(drift...)
}

func cmdSchemas(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"schemas needs generate or check"}
	}
	fs := newFlags("schemas")
	dir := fs.String("dir", "schemas", "the schemas directory of the repository")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	raw, pol, err := wiring.LoadPolicy(config.Config{Privacy: config.Privacy{PolicyFile: filepath.Join(*dir, "policy.json")}})
	if err != nil {
		return err
	}
	var stale []string
	for _, p := range purpose.All {
		fields, err := pol.Derive(raw, p)
		if err != nil {
			return err
		}
		want := policy.CleanSchemaJSON(p, fields)
		path := filepath.Join(*dir, schemas.CleanSchemaFile(p.String()))
		switch args[0] {
		case "generate":
			if err := os.WriteFile(path, want, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrote %s (%d fields)\n", path, len(fields))
		case "check":
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				stale = append(stale, path)
			}
		default:
			return usageError{"schemas needs generate or check"}
		}
	}
	spec, err := kanonspec.Default()
	if err != nil {
		return err
	}
	derived, err := spec.Derived()
	if err != nil {
		return err
	}
	for _, rel := range slices.Sorted(maps.Keys(derived)) {
		path := filepath.Join(*dir, rel)
		switch args[0] {
		case "generate":
			if err := os.WriteFile(path, derived[rel], 0o644); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrote %s\n", path)
		case "check":
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, derived[rel]) {
				stale = append(stale, path)
			}
		}
	}
	if len(stale) > 0 {
		return fmt.Errorf("stale derived schemas %v: run 'pipeline schemas generate'", stale)
	}
	if args[0] == "check" {
		fmt.Fprintln(stdout, "derived clean schemas are up to date")
	}
	return nil
}

func cmdPolicy(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "validate" {
		return usageError{"policy needs validate"}
	}
	fs := newFlags("policy")
	file := fs.String("file", "", "policy file (default: the checked-in schemas/policy.json)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	_, pol, err := wiring.LoadPolicy(config.Config{Privacy: config.Privacy{PolicyFile: *file}})
	if err != nil {
		return errors.New("invalid policy:\n" + err.Error())
	}
	fmt.Fprintf(stdout, "policy %s is valid for %d purposes\n", pol.Version, len(pol.Purposes))
	return nil
}

// cmdConfig prints the effective configuration, one PIPELINE_NAME=value
// line per variable, every secret redacted; an invalid configuration is
// the error Load reports.
func cmdConfig(args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "print" {
		return usageError{"config needs print"}
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	for _, l := range cfg.Lines() {
		fmt.Fprintln(stdout, l)
	}
	return nil
}

// cmdErase erases one data subject (SPEC 3.5) with the configuration's
// stores and topics, and prints what it did: counts and the ledger mark,
// never the subject id.
func cmdErase(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("erase")
	subject := fs.String("subject", "", "the subject id to erase (required)")
	request := fs.String("request", "", "the request id, recorded in the ledger and the notices")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *subject == "" {
		return usageError{"erase needs --subject ID"}
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	res, err := wiring.Erase(ctx, cfg, *subject, *request)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "erased %s: %d data keys shredded, %d consent keys tombstoned, %d notices, %d Redis keys deleted, %d records committed\n",
		res.Plan.Mark, len(res.Plan.DataKeys), len(res.Plan.ConsentKeys), len(res.Plan.Notices), res.RedisKeysDeleted, res.Records)
	return nil
}
