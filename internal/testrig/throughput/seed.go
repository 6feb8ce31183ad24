package throughput

import (
	"context"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/app/wiring"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
)

// seed makes the raw events (single-object encoded, keyed by subject, of
// subjects drawn uniformly from the --subjects id space), stores the
// consent of the subjects that appear in them, and only of those (so a
// 10M-subject id space costs no more Redis than the events), then
// produces the events.
// events returns the run's event sequence: called with 0, 1, 2, ... it
// returns event i and its subject, the same sequence for every caller (the
// seed, and the latency pool, which reuses its first events so that their
// subjects have consent stored).
func (b *bench) events() func(i int) (producer.Event, int) {
	gen := synth.New(16, b.opt.Subjects, b.start)
	pick := rand.New(rand.NewPCG(17, 17^0x9e3779b97f4a7c15))
	return func(i int) (producer.Event, int) {
		s := pick.IntN(b.opt.Subjects)
		return gen.EventFor(i, s), s
	}
}

func (b *bench) seed(ctx context.Context) error {
	enc, err := producer.NewEncoder()
	if err != nil {
		return err
	}
	next := b.events()
	seen := make([]uint64, (b.opt.Subjects+63)/64)
	raw := make([]*kgo.Record, 0, b.opt.Events)
	for i := 0; i < b.opt.Events; i++ {
		ev, s := next(i)
		seen[s/64] |= 1 << (s % 64)
		if b.opt.RecordBytes > 0 {
			if err := sizeEvent(enc, &ev, b.opt.RecordBytes); err != nil {
				return err
			}
		}
		r, err := enc.Record(b.cfg.Names.RawTopic, &ev)
		if err != nil {
			return err
		}
		b.bytes += int64(len(r.Value))
		raw = append(raw, r)
	}
	pp, err := wiring.BuildPrivacy(ctx, b.cfg, wiring.Deps{Redis: b.rdb, Registry: prometheus.NewRegistry(), Keys: b.keys})
	if err != nil {
		return err
	}
	var subs []string
	var recs []consent.Record
	stored := 0
	flush := func() error {
		if len(subs) == 0 {
			return nil
		}
		if err := pp.Store.PutMany(ctx, subs, recs); err != nil {
			return fmt.Errorf("bench throughput: consent: %w", err)
		}
		stored += len(subs)
		subs, recs = subs[:0], recs[:0]
		return nil
	}
	for w, word := range seen {
		for set := word; set != 0; {
			i := w*64 + bits.TrailingZeros64(set)
			set &= set - 1
			if r, ok := b.consentOf(i); ok {
				subs, recs = append(subs, synth.SubjectID(i)), append(recs, r)
			}
			if len(subs) == 1000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := pp.Store.MarkLoaded(ctx); err != nil {
		return err
	}
	if err := kafkaio.ProduceAll(ctx, b.cl, raw); err != nil {
		return err
	}
	b.logf("%d raw events (%.0f bytes each) of %d subjects (%d consent records stored) on %d partitions",
		b.opt.Events, float64(b.bytes)/float64(b.opt.Events), b.opt.Subjects, stored, b.opt.Partitions)
	return nil
}

// consentOf is subject i's stored consent: the first Options.Purposes
// purposes granted and the rest denied, every purpose granted
// (AllGranted), or the synthetic mix.
func (b *bench) consentOf(i int) (consent.Record, bool) {
	at := b.start.Add(-time.Hour).UnixMilli()
	switch {
	case b.opt.Purposes > 0:
		var r consent.Record
		for k, p := range purpose.All {
			st := consent.Denied
			if k < b.opt.Purposes {
				st = consent.Granted
			}
			r.Apply(p, st, consent.GDPR, at)
		}
		return r, true
	case b.opt.AllGranted:
		var r consent.Record
		for _, p := range purpose.All {
			r.Apply(p, consent.Granted, consent.GDPR, at)
		}
		return r, true
	}
	return synth.Consent(i, b.start)
}

// filler pads the free-text message: words without personal data (the
// redaction still scans them).
const filler = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua "

// sizeEvent brings an event's encoded size to target bytes where it can:
// below the natural size it drops optional fields (user agent, page,
// location, address, device, birth date) until it fits; above it pads
// the message.
func sizeEvent(enc *producer.Encoder, ev *producer.Event, target int) error {
	size := func() (int, error) {
		b, err := enc.AppendEncoded(nil, ev)
		if err != nil {
			return 0, fmt.Errorf("bench throughput: encode: %w", err)
		}
		return len(b), nil
	}
	n, err := size()
	if err != nil {
		return err
	}
	drops := []func(){
		func() { ev.UserAgent = "" }, func() { ev.PageURL = "" }, func() { ev.Location = nil },
		func() { ev.Address = nil }, func() { ev.DeviceID = "" }, func() { ev.BirthDate = nil },
	}
	for _, drop := range drops {
		if n <= target {
			break
		}
		drop()
		if n, err = size(); err != nil {
			return err
		}
	}
	// The length prefix and the union branch grow with the message: a few
	// passes settle it.
	for pass := 0; pass < 4 && n != target; pass++ {
		want := len(ev.Message) + target - n
		if want <= 0 {
			break
		}
		ev.Message = pad(ev.Message, want)
		if n, err = size(); err != nil {
			return err
		}
	}
	return nil
}

// pad returns s cut or extended with filler to n bytes.
func pad(s string, n int) string {
	if len(s) >= n {
		return s[:n]
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteString(s)
	if s != "" {
		sb.WriteByte(' ')
	}
	for sb.Len() < n {
		sb.WriteString(filler[:min(len(filler), n-sb.Len())])
	}
	return sb.String()
}
