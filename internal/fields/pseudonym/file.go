package pseudonym

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
)

// WriteKeyringFile writes kr, secrets included, to path in the keyring file
// format, with mode 0600, refusing to replace an existing file. It is the
// only way secrets leave a Keyring (String, %v and JSON all redact them).
func WriteKeyringFile(path string, kr *Keyring) error {
	type entry struct {
		Purpose string `json:"purpose"`
		ID      string `json:"id"`
		Secret  string `json:"secret"`
		Active  bool   `json:"active"`
	}
	var doc struct {
		Keys []entry `json:"keys"`
	}
	for _, p := range kr.purposes {
		pk := kr.byPurpose[p]
		for i, k := range pk.keys {
			doc.Keys = append(doc.Keys, entry{Purpose: p, ID: k.ID, Secret: base64.StdEncoding.EncodeToString(k.Secret), Active: i == pk.active})
		}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("pseudonym: write keyring: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("pseudonym: write keyring: %w", unwrapPathError(err))
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("pseudonym: write keyring %q: %w", path, unwrapPathError(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pseudonym: write keyring %q: %w", path, unwrapPathError(err))
	}
	return nil
}
