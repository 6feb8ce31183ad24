package export

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/codec/cleancodec"
	"github.com/privacy-pipeline/pipeline/internal/codec/wireformat"
	"github.com/privacy-pipeline/pipeline/internal/fields/policy"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// PartitionFor is the partition a record keyed by key lands in on a topic
// of n partitions, as the pipeline's producers place it: the runner's
// partitioner for clean topics is franz-go's StickyKeyPartitioner with
// its default hasher, Kafka's murmur2 default partitioner (the Java
// client's and librdkafka's murmur2_random: one key, one partition).
func PartitionFor(key []byte, n int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: key}, n))
}

// scan reads the clean topics for one export.
type scan struct {
	b        *Builder
	ids      []identity
	keys     map[string]keyState
	progress func(Progress)
	doc      *Document

	topics   []*topicScan
	byTopic  map[string]*topicScan
	parts    map[string]map[int32]*partScan
	scanned  int64 // records
	exported int
	total    int64 // offsets
	byID     map[uint32]*writer
	ctx      context.Context // the scan's (bounded by MaxDuration)
	planned  bool            // the partitions and their ends are known
}

type topicScan struct {
	out      *TopicRecords
	purpose  string
	ids      map[string]identity // by pseudonym
	known    []*writer           // single-object writers (policy-derived, checked-in)
	source   map[string]string   // clean field -> raw field, from the policy
	pending  int                 // partitions not done
	scanned  int64               // offsets
	total    int64
	lastCall time.Time
}

type partScan struct {
	ps            *PartitionScan
	done, counted bool
}

// writer is a compiled writer schema read as its own reader (every field
// it has is exported), with each field's raw source field.
type writer struct {
	dec    *cleancodec.Decoder
	fields []cleancodec.Field
	source map[string]string // clean field -> raw field (the encryption's associated data)
	action map[string]string
}

func (s *scan) run(ctx context.Context) error {
	cfg, opts := s.b.cfg, s.b.cfg.Options
	s.doc.Scan = Scan{PartitionPruning: !opts.FullScan, MaxRecords: opts.MaxRecordsScanned,
		MaxDurationMS: opts.MaxDuration.Milliseconds(), MaxExported: opts.MaxRecordsExported}
	s.byTopic, s.parts, s.byID = map[string]*topicScan{}, map[string]map[int32]*partScan{}, map[uint32]*writer{}
	var names []string
	for _, pur := range s.b.purposes() {
		topic, ok := cfg.Topics[pur]
		if !ok || topic == "" {
			continue
		}
		ts := &topicScan{out: &TopicRecords{Topic: topic, Purpose: pur, Scanned: []PartitionScan{}, Records: []Record{}, Complete: true},
			purpose: pur, ids: map[string]identity{}}
		for _, id := range s.ids {
			if id.purpose == pur {
				ts.ids[id.pseudonym] = id
			}
		}
		ts.known, ts.source = s.knownWriters(pur)
		s.topics = append(s.topics, ts)
		s.byTopic[topic] = ts
		names = append(names, topic)
	}
	if len(names) == 0 {
		return nil
	}
	for _, ts := range s.topics {
		s.doc.Records = append(s.doc.Records, *ts.out)
	}
	for i, ts := range s.topics {
		ts.out = &s.doc.Records[i]
	}
	sctx, cancel := context.WithTimeout(ctx, opts.MaxDuration)
	defer cancel()
	s.ctx = sctx
	consume, err := s.plan(sctx, names)
	if err != nil {
		return s.stopped(ctx, err)
	}
	s.planned = true
	s.doc.Scan.OffsetsToScan = s.total
	for _, ts := range s.topics {
		s.report(ts, true)
	}
	if len(consume) > 0 {
		if err := s.read(ctx, sctx, consume); err != nil {
			return err
		}
	}
	s.doc.Scan.RecordsScanned = s.scanned
	for _, ts := range s.topics {
		if ts.pending > 0 {
			ts.out.Complete = false
		}
		s.report(ts, true)
	}
	return nil
}

// stopped turns the end of the duration bound into an incomplete
// document and any other error into an error.
func (s *scan) stopped(ctx context.Context, err error) error {
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		s.incomplete(ReasonMaxDuration)
		for _, ts := range s.topics {
			if !s.planned || ts.pending > 0 {
				ts.out.Complete = false
			}
		}
		return nil
	}
	return fmt.Errorf("export: %w", err)
}

func (s *scan) incomplete(reason string) {
	if s.doc.Complete {
		s.doc.Complete, s.doc.IncompleteReason = false, reason
	}
}

// plan lists the partitions to read, with their start offsets and the
// ends captured now (the last stable offsets: what read_committed can
// reach), and returns what to consume.
func (s *scan) plan(ctx context.Context, topics []string) (map[string]map[int32]kgo.Offset, error) {
	adm, err := s.b.cfg.Kafka.NewAdmin()
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	consume := map[string]map[int32]kgo.Offset{}
	for _, ts := range s.topics {
		topic := ts.out.Topic
		var parts []kadm.ListedOffset
		missing := false
		for _, o := range ends[topic] {
			switch {
			case errors.Is(o.Err, kerr.UnknownTopicOrPartition):
				missing = true
			case o.Err != nil:
				return nil, fmt.Errorf("end offset of %s/%d: %w", topic, o.Partition, o.Err)
			default:
				parts = append(parts, o)
			}
		}
		if missing || len(parts) == 0 {
			continue // no such topic: it retains nothing
		}
		ts.out.Exists, ts.out.Partitions = true, len(parts)
		want := s.partitions(ts, len(parts))
		slices.SortFunc(parts, func(a, b kadm.ListedOffset) int { return int(a.Partition - b.Partition) })
		for _, end := range parts {
			if want != nil && !want[end.Partition] {
				continue
			}
			st, ok := starts.Lookup(topic, end.Partition)
			if !ok || st.Err != nil {
				return nil, fmt.Errorf("start offset of %s/%d: %v", topic, end.Partition, st.Err)
			}
			from := min(st.Offset, end.Offset)
			ts.out.Scanned = append(ts.out.Scanned, PartitionScan{Partition: end.Partition, Start: from, End: end.Offset, Reached: from})
		}
		for i := range ts.out.Scanned {
			ps := &ts.out.Scanned[i]
			if s.parts[topic] == nil {
				s.parts[topic] = map[int32]*partScan{}
			}
			p := &partScan{ps: ps, done: ps.Start >= ps.End}
			p.counted = p.done
			s.parts[topic][ps.Partition] = p
			if p.done {
				continue
			}
			ts.pending++
			ts.total += ps.End - ps.Start
			if consume[topic] == nil {
				consume[topic] = map[int32]kgo.Offset{}
			}
			consume[topic][ps.Partition] = kgo.NewOffset().At(ps.Start)
		}
		s.total += ts.total
	}
	return consume, nil
}

// partitions returns the partitions the subject's pseudonyms of the
// topic's purpose land in, for n partitions and each earlier count; nil
// means all (FullScan).
func (s *scan) partitions(ts *topicScan, n int) map[int32]bool {
	if s.b.cfg.Options.FullScan {
		return nil
	}
	want := map[int32]bool{}
	counts := append([]int{n}, s.b.cfg.Options.PartitionCounts...)
	for ps := range ts.ids {
		for _, c := range counts {
			if c <= n {
				want[PartitionFor([]byte(ps), c)] = true
			}
		}
	}
	return want
}

// read consumes the planned partitions from their starts to their
// captured ends.
func (s *scan) read(ctx, sctx context.Context, consume map[string]map[int32]kgo.Offset) error {
	// Control records (transaction markers) are kept so that a partition
	// whose last offset before its end is a marker is seen to reach it.
	cl, err := s.b.cfg.Kafka.NewClient(kgo.ConsumePartitions(consume), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer cl.Close()
	pending := 0
	for _, ts := range s.topics {
		pending += ts.pending
	}
	maxRecords, maxExported := s.b.cfg.Options.MaxRecordsScanned, s.b.cfg.Options.MaxRecordsExported
	for pending > 0 {
		fs := cl.PollFetches(sctx)
		if err := sctx.Err(); err != nil {
			return s.stopped(ctx, err)
		}
		var finished map[string][]int32
		finish := func(ts *topicScan, topic string, p *partScan) {
			if p.counted {
				return
			}
			p.counted, p.done = true, true
			pending--
			ts.pending--
			if finished == nil {
				finished = map[string][]int32{}
			}
			finished[topic] = append(finished[topic], p.ps.Partition)
		}
		for _, fe := range fs.Errors() {
			var loss *kgo.ErrDataLoss
			if errors.As(fe.Err, &loss) {
				// What was being read is gone (truncated): it is no longer
				// held. Past the captured end, the partition is done.
				if ts, p := s.byTopic[fe.Topic], s.parts[fe.Topic][fe.Partition]; ts != nil && p != nil && loss.ResetTo >= p.ps.End {
					finish(ts, fe.Topic, p)
				}
				continue
			}
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, context.DeadlineExceeded) {
				continue
			}
			return fmt.Errorf("export: read %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		stop := ""
		var readErr error
		fs.EachTopic(func(ft kgo.FetchTopic) {
			ts := s.byTopic[ft.Topic]
			for _, fp := range ft.Partitions {
				p := s.parts[ft.Topic][fp.Partition]
				if ts == nil || p == nil {
					continue
				}
				for _, r := range fp.Records {
					if stop != "" || p.done {
						break
					}
					if r.Offset >= p.ps.End { // the offsets before were skipped (aborted)
						ts.scanned += p.ps.End - p.ps.Reached
						p.ps.Reached, p.done = p.ps.End, true
						break
					}
					if !r.Attrs.IsControl() {
						// A bound stops before the record it would exceed:
						// incomplete only when there was more to read.
						if s.scanned >= maxRecords {
							stop = ReasonMaxRecordsScanned
							break
						}
						if _, mine := ts.ids[string(r.Key)]; mine && s.exported >= maxExported {
							stop = ReasonMaxRecordsExported
							break
						}
						s.scanned++
						ts.out.RecordsScanned++
						ok, err := s.match(ts, r)
						if err != nil {
							readErr, stop = err, "error"
							break
						}
						if ok {
							s.exported++
						}
					}
					if r.Offset >= p.ps.Reached {
						ts.scanned += r.Offset + 1 - p.ps.Reached
						p.ps.Reached = r.Offset + 1
					}
					if p.ps.Reached >= p.ps.End {
						p.done = true
					}
				}
				if p.done {
					finish(ts, ft.Topic, p)
				}
			}
			if ts != nil {
				s.report(ts, false)
			}
		})
		if len(finished) > 0 {
			cl.RemoveConsumePartitions(finished)
		}
		if readErr != nil {
			return s.stopped(ctx, readErr)
		}
		if stop != "" {
			s.incomplete(stop)
			return nil
		}
	}
	return nil
}

// report calls the progress callback for a topic: always when force,
// otherwise at most every ProgressEvery.
func (s *scan) report(ts *topicScan, force bool) {
	if s.progress == nil {
		return
	}
	now := time.Now()
	if !force && now.Sub(ts.lastCall) < s.b.cfg.Options.ProgressEvery {
		return
	}
	ts.lastCall = now
	var all int64
	for _, t := range s.topics {
		all += t.scanned
	}
	s.progress(Progress{Topic: ts.out.Topic, Scanned: ts.scanned, Total: ts.total, AllScanned: all, AllTotal: s.total, RecordsScanned: s.scanned})
}

// match adds r to the export when it is keyed by one of the subject's
// pseudonyms of the topic's purpose, and reports whether it did.
func (s *scan) match(ts *topicScan, r *kgo.Record) (bool, error) {
	id, ok := ts.ids[string(r.Key)]
	if !ok {
		return false, nil
	}
	ts.out.Matched++
	rec, ok, err := s.decode(ts, id, r)
	if err != nil {
		return false, err
	}
	if !ok {
		ts.out.Undecodable++
		return false, nil
	}
	ts.out.Records = append(ts.out.Records, rec)
	return true, nil
}

// decode turns one of the subject's records into its export form; ok is
// false when it does not decode.
func (s *scan) decode(ts *topicScan, id identity, r *kgo.Record) (Record, bool, error) {
	h, framed := wireformat.Parse(r.Value)
	if !framed {
		return Record{}, false, nil
	}
	var w *writer
	if h.Format == wireformat.Confluent {
		var err error
		if w, err = s.writerByID(h.ID); err != nil {
			return Record{}, false, err
		}
	} else {
		for _, k := range ts.known {
			if k.dec.Known(h.Fingerprint) {
				w = k
				break
			}
		}
	}
	if w == nil {
		return Record{}, false, nil
	}
	var cr cleancodec.Record
	if err := w.dec.Decode(r.Value, &cr); err != nil {
		return Record{}, false, nil
	}
	out := Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC().Format(time.RFC3339Nano),
		Key: string(r.Key), Writer: h.String(), Value: make(Fields, 0, len(w.fields))}
	for _, hd := range r.Headers {
		v := string(hd.Value)
		switch hd.Key {
		case processors.HeaderPolicyVersion:
			out.Provenance.PolicyVersion = v
		case processors.HeaderConsentVersion:
			out.Provenance.ConsentVersion = v
		case processors.HeaderConsentBasis:
			out.Provenance.ConsentBasis = v
		case processors.HeaderKeyID:
			out.Provenance.KeyID = v
		case processors.HeaderDataKey:
			out.Provenance.DataKey = v
		case processors.HeaderSchema:
			out.Provenance.Schema = v
		}
	}
	for i, f := range w.fields {
		v := cr.Values[i]
		out.Value = append(out.Value, Field{Name: f.Name, Value: jsonValue(f.Type, v)})
		if !v.Present || f.Type != cleancodec.TypeString {
			continue
		}
		str := string(v.Bytes)
		if !strings.HasPrefix(str, subjectkey.EncryptedPrefix) || (w.action[f.Name] != string(policy.Encrypt) && !strings.HasSuffix(f.Name, "_encrypted")) {
			continue // tokens stay tokens
		}
		src := w.source[f.Name]
		if src == "" {
			src = ts.source[f.Name]
		}
		out.Decrypted = append(out.Decrypted, s.decrypt(id, out.Provenance.DataKey, f.Name, src, str))
	}
	return out, true, nil
}

// decrypt decrypts one encrypted value with the subject's own data key
// for the record's purpose and pseudonym key, never with a key the
// record's header names otherwise.
func (s *scan) decrypt(id identity, header, field, source, value string) Decrypted {
	d := Decrypted{Field: field, SourceField: source}
	ks := s.keys[id.dataKey]
	switch {
	case header != "" && header != id.dataKey:
		d.Status = StatusDataKeyMismatch
	case source == "":
		d.Status = StatusUnknownSource
	case ks.status == KeyShredded:
		d.Status = StatusKeyShredded
	case ks.status == KeyAbsent || ks.status == "":
		d.Status = StatusKeyAbsent
	case ks.key == nil:
		d.Status = StatusNoKEK
	default:
		pt, err := ks.key.Decrypt(value, source)
		switch {
		case err != nil:
			d.Status = StatusDoesNotDecrypt
		case utf8.Valid(pt):
			str := string(pt)
			d.Status, d.Value = StatusDecrypted, &str
		default:
			d.Status, d.ValueBase64 = StatusDecrypted, base64.StdEncoding.EncodeToString(pt)
		}
	}
	return d
}

// jsonValue is a decoded value as JSON: null when absent, strings as
// strings, bytes in base64, timestamps in RFC 3339 (UTC), non-finite
// floats as strings.
func jsonValue(t cleancodec.Type, v cleancodec.Value) any {
	if !v.Present {
		return nil
	}
	switch t {
	case cleancodec.TypeString:
		return string(v.Bytes)
	case cleancodec.TypeBytes:
		return base64.StdEncoding.EncodeToString(v.Bytes)
	case cleancodec.TypeInt, cleancodec.TypeLong:
		return v.Num
	case cleancodec.TypeTimestampMillis:
		return time.UnixMilli(v.Num).UTC().Format(time.RFC3339Nano)
	case cleancodec.TypeBoolean:
		return v.Num != 0
	case cleancodec.TypeFloat, cleancodec.TypeDouble:
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			return fmt.Sprint(v.F)
		}
		return v.F
	}
	return nil
}

// knownWriters are the writer schemas single-object records of a purpose
// can have: the policy's derived clean schema and the checked-in one.
func (s *scan) knownWriters(pur string) ([]*writer, map[string]string) {
	var schemasJSON [][]byte
	source := map[string]string{}
	if p, err := purpose.Parse(pur); err == nil {
		if s.b.cfg.Policy != nil {
			if fields, err := s.b.cfg.Policy.Derive(s.b.cfg.Raw, p); err == nil {
				schemasJSON = append(schemasJSON, policy.CleanSchemaJSON(p, fields))
				for _, f := range fields {
					source[f.Name] = f.Source.Path
				}
			}
		}
		if b, err := schemas.CleanSchemaJSON(pur); err == nil {
			schemasJSON = append(schemasJSON, b)
		}
	}
	var out []*writer
	for _, js := range schemasJSON {
		if w := s.compile(js); w != nil {
			out = append(out, w)
		}
	}
	return out, source
}

// writerByID compiles the writer schema of a registry id (nil when the
// registry does not have it or it is no clean schema); a registry that
// cannot answer is an error.
func (s *scan) writerByID(id uint32) (*writer, error) {
	if w, ok := s.byID[id]; ok {
		return w, nil
	}
	if s.b.cfg.Resolver == nil {
		return nil, nil
	}
	js, err := s.b.cfg.Resolver.SchemaByID(s.ctx, id)
	if errors.Is(err, wireformat.ErrUnknownID) {
		s.byID[id] = nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("export: schema registry: %w", err)
	}
	w := s.compile(js)
	if w != nil {
		if _, err := w.dec.RegisterID(id, js); err != nil {
			w = nil
		}
	}
	s.byID[id] = w
	return w, nil
}

// compile builds a writer from a schema (nil when cleancodec cannot read
// it).
func (s *scan) compile(js []byte) *writer {
	dec, err := cleancodec.New(js)
	if err != nil {
		return nil
	}
	w := &writer{dec: dec, fields: dec.Fields(), source: map[string]string{}, action: map[string]string{}}
	var doc struct {
		Fields []struct {
			Name   string `json:"name"`
			Source string `json:"source_field"`
			Action string `json:"action"`
		} `json:"fields"`
	}
	if json.Unmarshal(js, &doc) == nil {
		for _, f := range doc.Fields {
			w.source[f.Name], w.action[f.Name] = f.Source, f.Action
		}
	}
	return w
}
