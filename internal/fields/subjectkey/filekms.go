package subjectkey

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// FileKMS is a key-encryption key kept in a file: a Tink keyset of
// AES-256-GCM keys in Tink's JSON format. The primary key wraps; every
// key in the file unwraps, so rotating (RotateKEKFile) adds a primary and
// keeps the old keys until every wrapped key has been re-wrapped. The file
// is a secret like the pseudonym keyring: mode 0600, never printed.
type FileKMS struct {
	a       tink.AEAD
	primary uint32
	keys    int
}

var _ KMS = (*FileKMS)(nil)

// LoadKEKFile reads a key-encryption key file (or another Tink AES-GCM
// keyset file: the privacy center's link key). A file readable by others,
// or writable by its group, is refused; group read is allowed (a
// Kubernetes Secret mounted 0440 for the pod's fsGroup).
func LoadKEKFile(path string) (*FileKMS, error) {
	h, err := readKEK(path)
	if err != nil {
		return nil, err
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("subjectkey: key-encryption key %s: %w", path, err)
	}
	p, err := h.Primary()
	if err != nil {
		return nil, fmt.Errorf("subjectkey: key-encryption key %s: %w", path, err)
	}
	return &FileKMS{a: a, primary: p.KeyID(), keys: h.Len()}, nil
}

func readKEK(path string) (*keyset.Handle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("subjectkey: key-encryption key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("subjectkey: key-encryption key: %w", err)
	}
	// Group read is allowed: a Kubernetes Secret is mounted root:fsGroup
	// 0440 for the pod's user (deploy/k8s); others, or any write but the
	// owner's, is refused.
	if st.Mode().Perm()&0o027 != 0 {
		return nil, fmt.Errorf("subjectkey: key file %s is readable by others or writable by group (mode %04o): chmod 600 (or 0440 for a group such as a pod's fsGroup)", path, st.Mode().Perm())
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(f))
	if err != nil {
		return nil, fmt.Errorf("subjectkey: key-encryption key %s is not a Tink JSON keyset: %w", path, err)
	}
	return h, nil
}

// GenerateKEKFile writes a new key-encryption key file (one AES-256-GCM
// key), mode 0600, refusing to replace an existing file.
func GenerateKEKFile(path string) error {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return fmt.Errorf("subjectkey: new key-encryption key: %w", err)
	}
	return writeKEK(path, h, os.O_EXCL)
}

// RotateKEKFile adds a new AES-256-GCM key to the file and makes it the
// primary (new data keys are wrapped by it; the old keys still unwrap),
// and returns its Tink key id.
func RotateKEKFile(path string) (uint32, error) {
	h, err := readKEK(path)
	if err != nil {
		return 0, err
	}
	m := keyset.NewManagerFromHandle(h)
	id, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return 0, fmt.Errorf("subjectkey: rotate %s: %w", path, err)
	}
	if err := m.SetPrimary(id); err != nil {
		return 0, fmt.Errorf("subjectkey: rotate %s: %w", path, err)
	}
	nh, err := m.Handle()
	if err != nil {
		return 0, fmt.Errorf("subjectkey: rotate %s: %w", path, err)
	}
	return id, writeKEK(path, nh, os.O_TRUNC)
}

// writeKEK writes h to path (through a temporary file and a rename when
// replacing, so a crash leaves the old or the new file, never half).
func writeKEK(path string, h *keyset.Handle, flag int) error {
	target := path
	if flag == os.O_TRUNC {
		path += ".tmp"
		flag = os.O_EXCL
		os.Remove(path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|flag, 0o600)
	if err != nil {
		return fmt.Errorf("subjectkey: write key-encryption key: %w", err)
	}
	err = insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(f))
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil && path != target {
		err = os.Rename(path, target)
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("subjectkey: write key-encryption key %s: %w", target, err)
	}
	return nil
}

// EncryptWithContext wraps with the primary key.
func (k *FileKMS) EncryptWithContext(_ context.Context, plaintext, associatedData []byte) ([]byte, error) {
	return k.a.Encrypt(plaintext, associatedData)
}

// DecryptWithContext unwraps with whichever key of the file made it.
func (k *FileKMS) DecryptWithContext(_ context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	return k.a.Decrypt(ciphertext, associatedData)
}

// Primary is the Tink key id of the key that wraps.
func (k *FileKMS) Primary() uint32 { return k.primary }

// String describes the key without its material.
func (k *FileKMS) String() string {
	return fmt.Sprintf("subjectkey.FileKMS{primary: %d, keys: %d}", k.primary, k.keys)
}

// GoString is String (for %#v).
func (k *FileKMS) GoString() string { return k.String() }
