package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/fields/pseudonym"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
)

// cmdKeys writes a new pseudonym keyring file (generate: one random
// 256-bit key per purpose; the secrets go only to the file, mode 0600,
// never to stdout) or checks one (check: what the processor will load,
// read as the user it runs as; it prints key ids and purposes, never a
// secret).
func cmdKeys(args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "check" {
		return cmdKeysCheck(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "kek" {
		return cmdKeysKEK("kek", "key-encryption key", args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "link" {
		return cmdKeysKEK("link", "privacy-center link key", args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "ledger" {
		return cmdKeysLedger(args[1:], stdout)
	}
	if len(args) == 0 || args[0] != "generate" {
		return usageError{"keys needs generate, check, kek, link or ledger"}
	}
	fs_ := newFlags("keys")
	out := fs_.String("out", "", "keyring file to write (required; never overwritten unless --force)")
	id := fs_.String("id", time.Now().UTC().Format("2006-01"), "key id suffix, e.g. the rotation month")
	force := fs_.Bool("force", false, "overwrite an existing file")
	keepIfExists := fs_.Bool("keep-if-exists", false, "exit 0 without writing when the file exists (for init containers)")
	if err := fs_.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *out == "" {
		return usageError{"keys generate needs --out FILE"}
	}
	if _, err := os.Stat(*out); err == nil {
		if *keepIfExists {
			fmt.Fprintf(stdout, "keyring %s exists; kept\n", *out)
			return nil
		}
		if !*force {
			return fmt.Errorf("keyring %s exists (use --force to replace it; old pseudonyms would no longer match)", *out)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if *force {
		if err := os.Remove(*out); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	kr, err := pseudonym.GenerateKeyring(purpose.Names(), *id)
	if err != nil {
		return err
	}
	if err := pseudonym.WriteKeyringFile(*out, kr); err != nil {
		return err
	}
	n := len(purpose.Names())
	fmt.Fprintf(stdout, "wrote a keyring with %d keys (ids *-%s) to %s (mode 0600)\n", n, *id, *out)
	return nil
}

// cmdKeysKEK makes (new) or rotates (rotate) a Tink AES-256-GCM keyset
// file, mode 0600: the key-encryption key of the per-subject data keys
// (keys kek, PIPELINE_KEK_FILE) or the key sealing the privacy center's
// link tokens (keys link, PIPELINE_PRIVACY_CENTER_LINK_KEY_FILE; after a
// rotation, links sealed by the older keys still open). The key material
// goes only to the file; the output names the primary key's Tink id.
func cmdKeysKEK(cmd, what string, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "new" && args[0] != "rotate") {
		return usageError{"keys " + cmd + " needs new or rotate"}
	}
	fs_ := newFlags("keys " + cmd + " " + args[0])
	out := fs_.String("out", "", what+" file (required; new never overwrites one)")
	keepIfExists := fs_.Bool("keep-if-exists", false, "new: exit 0 without writing when the file exists (for init containers)")
	if err := fs_.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *out == "" {
		return usageError{"keys " + cmd + " " + args[0] + " needs --out FILE"}
	}
	if args[0] == "rotate" {
		id, err := subjectkey.RotateKEKFile(*out)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added key %d to %s as the primary: it seals from now on, the older keys still open\n", id, *out)
		return nil
	}
	if _, err := os.Stat(*out); err == nil && *keepIfExists {
		fmt.Fprintf(stdout, "%s %s exists; kept\n", what, *out)
		return nil
	}
	if err := subjectkey.GenerateKEKFile(*out); err != nil {
		return err
	}
	k, err := subjectkey.LoadKEKFile(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote a %s (AES-256-GCM, Tink key %d) to %s (mode 0600)\n", what, k.Primary(), *out)
	return nil
}

// cmdKeysLedger makes the erasure ledger's key (PIPELINE_ERASURE_KEY_FILE):
// 256 random bits, mode 0600, never replaced (a new key would forget
// every erasure).
func cmdKeysLedger(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "new" {
		return usageError{"keys ledger needs new"}
	}
	fs_ := newFlags("keys ledger new")
	out := fs_.String("out", "", "ledger key file (required; never overwritten)")
	keepIfExists := fs_.Bool("keep-if-exists", false, "exit 0 without writing when the file exists (for init containers)")
	if err := fs_.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *out == "" {
		return usageError{"keys ledger new needs --out FILE"}
	}
	if _, err := os.Stat(*out); err == nil && *keepIfExists {
		fmt.Fprintf(stdout, "ledger key %s exists; kept\n", *out)
		return nil
	}
	if err := erasure.GenerateLedgerKeyFile(*out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote an erasure ledger key to %s (mode 0600)\n", *out)
	return nil
}

// cmdKeysCheck loads a keyring exactly as 'pipeline run privacy' does
// (PIPELINE_PSEUDONYM_KEYS_FILE) and reports its purposes and active key
// ids: an init container or an operator runs it as the processor's user to
// prove that the mounted file is readable and valid.
func cmdKeysCheck(args []string, stdout io.Writer) error {
	fs_ := newFlags("keys check")
	file := fs_.String("file", "", "keyring file to check (required)")
	if err := fs_.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *file == "" {
		return usageError{"keys check needs --file FILE"}
	}
	kr, err := pseudonym.LoadKeyring(*file)
	if err != nil {
		return fmt.Errorf("keys check: %w", err)
	}
	for _, p := range kr.Purposes() {
		k, ok := kr.Active(p)
		if !ok {
			return fmt.Errorf("keys check: purpose %s has no active key", p)
		}
		fmt.Fprintf(stdout, "%s active key %s\n", p, k.ID)
	}
	return nil
}

// cmdProbe is a health check for images without a shell or curl.
func cmdProbe(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return usageError{"probe needs a URL"}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe: %s answered %s", args[0], resp.Status)
	}
	return nil
}
