package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/httpauth"
)

// cmdAPIToken: 'pipeline api-token new' makes a bearer token for the
// consent API, writes it (and only it) to --out (0600) and adds its
// SHA-256 entry to the principals file; 'revoke' removes a principal's
// tokens. The token is never printed.
func cmdAPIToken(args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "new" && args[0] != "revoke") {
		return usageError{"api-token needs new or revoke"}
	}
	fs_ := newFlags("api-token " + args[0])
	principals := fs_.String("principals", "", "the principals file (PIPELINE_CONSENT_API_AUTH_FILE) to add the token's hash to (required; created if missing)")
	principal := fs_.String("principal", "", "who the token is for, e.g. privacy-center (required)")
	scopes := fs_.String("scopes", "", "comma-separated scopes: consent:read, consent:write, consent:import, consent:*, requests:read, requests:write, requests:*, admin (new)")
	out := fs_.String("out", "", "file to write the token to, mode 0600 (new; required)")
	expires := fs_.Duration("expires", 0, "validity, e.g. 2160h (new; 0: until revoked)")
	keep := fs_.Bool("keep-if-exists", false, "exit 0 without a new token when --out exists (for init containers)")
	if err := fs_.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *principals == "" || *principal == "" {
		return usageError{"api-token needs --principals FILE and --principal NAME"}
	}
	f, err := httpauth.ReadFile(*principals, true)
	if err != nil {
		return err
	}
	if args[0] == "revoke" {
		kept := f.Tokens[:0]
		for _, t := range f.Tokens {
			if t.Principal != *principal {
				kept = append(kept, t)
			}
		}
		n := len(f.Tokens) - len(kept)
		f.Tokens = kept
		if err := writePrincipals(*principals, f); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %d token(s) of %s in %s; the API stops accepting them within a second\n", n, *principal, *principals)
		return nil
	}
	if *out == "" || *scopes == "" {
		return usageError{"api-token new needs --out FILE and --scopes LIST"}
	}
	if _, err := os.Stat(*out); err == nil {
		if *keep {
			fmt.Fprintf(stdout, "token file %s exists; kept\n", *out)
			return nil
		}
		return fmt.Errorf("token file %s exists (remove it first, or --keep-if-exists)", *out)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var ss []httpauth.Scope
	for _, s := range strings.Split(*scopes, ",") {
		ss = append(ss, httpauth.Scope(strings.TrimSpace(s)))
	}
	var exp time.Time
	if *expires > 0 {
		exp = time.Now().Add(*expires)
	}
	tok, e, err := httpauth.NewToken(*principal, ss, exp)
	if err != nil {
		return err
	}
	f.Tokens = append(f.Tokens, e)
	if err := f.Validate(); err != nil {
		return fmt.Errorf("api-token: %w", err)
	}
	if err := os.WriteFile(*out, []byte(tok+"\n"), 0o600); err != nil {
		return err
	}
	if err := writePrincipals(*principals, f); err != nil {
		_ = os.Remove(*out)
		return err
	}
	fmt.Fprintf(stdout, "token for %s (%s) written to %s; its hash added to %s\n", *principal, *scopes, *out, *principals)
	return nil
}

// writePrincipals replaces the principals file atomically (the API may be
// reading it).
func writePrincipals(path string, f httpauth.File) error {
	if f.Tokens == nil {
		f.Tokens = []httpauth.TokenEntry{}
	}
	if f.Certificates == nil {
		f.Certificates = []httpauth.CertificateEntry{}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".principals-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o640); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
