// Package decrypt lets an authorised consumer of the clean topics read the
// fields the policy encrypts or tokenizes: it holds the key-encryption key
// (PIPELINE_KEK_FILE) and the records of privacy.keys, and decrypts a
// clean record's field with the data key its pp-data-key header names.
// Once a subject is erased its key's record is a tombstone: Field then
// returns ErrErased, for the records already read as for new ones.
//
//	kr, err := decrypt.Open("/secrets/kek.json")
//	n, err := kr.ReadTopic(ctx, kafkaconn.Config{Brokers: brokers}, "privacy.keys") // to the end offsets
//	email, err := kr.Field(ctx, rec, "email", value)         // value: "e1...."
//
// The cryptography is Tink's (internal/fields/subjectkey); Python has the
// same in examples/python/decrypt.py.
package decrypt

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/processors"
)

// Errors Field returns besides a failed decryption.
var (
	// ErrErased: the key was shredded (its record is a tombstone).
	ErrErased = errors.New("decrypt: the subject was erased (its data key is shredded)")
	// ErrUnknownKey: no record of the key was read (read the key topic
	// further, or the record is not this pipeline's).
	ErrUnknownKey = errors.New("decrypt: the data key is not on the key topic as read")
	// ErrNoKey: the record names no data key (its purpose encrypts
	// nothing).
	ErrNoKey = errors.New("decrypt: the record has no pp-data-key header")
)

// Keyring is the data keys read from privacy.keys. It is safe for
// concurrent use.
type Keyring struct {
	kms      subjectkey.KMS
	mu       sync.Mutex
	wrapped  map[string]subjectkey.Wrapped
	shredded map[string]bool
	keys     map[string]*subjectkey.DataKey
}

// Open returns an empty keyring whose keys unwrap with the key-encryption
// key file at kekPath.
func Open(kekPath string) (*Keyring, error) {
	kms, err := subjectkey.LoadKEKFile(kekPath)
	if err != nil {
		return nil, err
	}
	return New(kms), nil
}

// New returns an empty keyring over a key-encryption key (a file, or a
// KMS through Tink's AEADWithContext).
func New(kms subjectkey.KMS) *Keyring {
	return &Keyring{kms: kms, wrapped: map[string]subjectkey.Wrapped{}, shredded: map[string]bool{}, keys: map[string]*subjectkey.DataKey{}}
}

// Add applies one record of the key topic: a wrapped key, or a tombstone
// that shreds it. A record that is not a wrapped key is an error (and
// changes nothing).
func (k *Keyring) Add(rec *kgo.Record) error {
	id := string(rec.Key)
	k.mu.Lock()
	defer k.mu.Unlock()
	if rec.Value == nil {
		k.shredded[id] = true
		delete(k.wrapped, id)
		delete(k.keys, id)
		return nil
	}
	if subjectkey.IsLedgerKey(id) {
		return nil // an erasure ledger record: no key
	}
	w, err := subjectkey.ParseWrapped(rec.Value)
	if err != nil {
		return fmt.Errorf("decrypt: key record at %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	if w.ID != id {
		return fmt.Errorf("decrypt: key record at %s/%d@%d holds the key of another id", rec.Topic, rec.Partition, rec.Offset)
	}
	if !k.shredded[id] {
		k.wrapped[id] = w
	}
	return nil
}

// ReadTopic reads the key topic from its start to its end offsets (as
// they are at the call), committed records only, and adds every record. It
// opens its own clients from conn (brokers, TLS, SASL: the pipeline's one
// connection owner) and returns the number of records read.
func (k *Keyring) ReadTopic(ctx context.Context, conn kafkaconn.Config, topic string) (int, error) {
	adm, err := conn.NewAdmin()
	if err != nil {
		return 0, fmt.Errorf("decrypt: %w", err)
	}
	defer adm.Close()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("decrypt: list %s: %w", topic, err)
	}
	want := map[int32]kgo.Offset{}
	pending := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = kgo.NewOffset().AtStart()
			pending[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return 0, nil
	}
	// Control records (transaction markers) are kept so that a partition
	// whose last offset is a commit marker is seen to reach its end.
	cl, err := conn.NewClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: want}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return 0, fmt.Errorf("decrypt: %w", err)
	}
	defer cl.Close()
	n := 0
	for len(pending) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return n, err
		}
		for _, fe := range fs.Errors() {
			return n, fmt.Errorf("decrypt: read %s: %w", topic, fe.Err)
		}
		var addErr error
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := pending[r.Partition]; ok && r.Offset+1 >= end {
				delete(pending, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			n++
			if err := k.Add(r); err != nil && addErr == nil {
				addErr = err
			}
		})
		if addErr != nil {
			return n, addErr
		}
	}
	return n, nil
}

// Field decrypts one encrypt or tokenize value of a clean record's field
// (the field's source path, e.g. "email"), with the key its pp-data-key
// header names.
func (k *Keyring) Field(ctx context.Context, rec *kgo.Record, field, value string) ([]byte, error) {
	var id string
	for _, h := range rec.Headers {
		if h.Key == processors.HeaderDataKey {
			id = string(h.Value)
		}
	}
	if id == "" {
		return nil, ErrNoKey
	}
	dk, err := k.key(ctx, id)
	if err != nil {
		return nil, err
	}
	return dk.Decrypt(value, field)
}

func (k *Keyring) key(ctx context.Context, id string) (*subjectkey.DataKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.shredded[id] {
		return nil, ErrErased
	}
	if dk, ok := k.keys[id]; ok {
		return dk, nil
	}
	w, ok := k.wrapped[id]
	if !ok {
		return nil, ErrUnknownKey
	}
	dk, err := subjectkey.Unwrap(ctx, k.kms, w)
	if err != nil {
		return nil, err
	}
	k.keys[id] = dk
	return dk, nil
}
