// Package fulfil carries out data-subject requests ('pipeline run
// requests'): it follows privacy.requests, keeps the requests' store
// (requests/requestredis) in step with the log, and runs every verified
// request: an erasure through the erasure executor (internal/erasure), an
// access or portability request through the exporter, whose document it
// keeps for download. Every change it makes is logged back to
// privacy.requests under the request's id, with its audit record on
// privacy.audit in the same produce.
//
// It is idempotent by request id: a record seen again (a replay, a
// redelivery after a crash) changes nothing that is already done, and a
// request interrupted in progress is run again from the start (an erasure
// and an export are both safe to repeat). Bad records are counted by
// outcome and skipped; a store or broker that cannot answer pauses the
// service (nothing is committed, the record is handled again).
//
// It also publishes the open requests by days left to their deadline
// (pipeline_requests_open) and the least days left
// (pipeline_requests_min_days_left), which the alerts watch.
package fulfil

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/requests"
	"github.com/privacy-pipeline/pipeline/internal/requests/requestredis"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
)

// Eraser erases one subject (erasure.Executor): idempotent.
type Eraser interface {
	Erase(ctx context.Context, subject, request string) (map[string]int64, error)
}

// Exporter builds the export document of one subject (internal/export
// through wiring). progress is called with the fraction done, from 0 to 1.
// The document must say so when the subject was erased or is unknown;
// an error means it could not be built (it is retried).
type Exporter interface {
	Export(ctx context.Context, subject string, reqs []requests.Request, progress func(float64)) (doc []byte, summary map[string]int64, err error)
}

// Config configures a Service.
type Config struct {
	Kafka kafkaconn.Config
	// Topic is privacy.requests; Group the service's consumer group.
	Topic, Group string
	Store        *requestredis.Store
	Eraser       Eraser
	Exporter     Exporter
	// Mark returns a subject's erasure ledger mark (its requests carry it
	// in place of the raw id once it is erased).
	Mark func(subject string) string
	// AuditTopic, when set, receives an audit record of every status
	// change the service makes (privacy.audit), in the change's produce.
	AuditTopic string
	// ExportTTL is how long a finished export's document can be
	// downloaded (PIPELINE_EXPORT_TTL, default 7 days).
	ExportTTL time.Duration
	// Name is recorded as the changes' author (default "requests").
	Name    string
	Metrics *Metrics
	Log     *slog.Logger
	Now     func() time.Time
	// GaugeEvery is how often the open requests' gauges are recomputed
	// (default 15s).
	GaugeEvery time.Duration
	// Heartbeat is how often a compaction heartbeat (kafkaio.Heartbeat)
	// is written to every partition of Topic, so that an erased
	// subject's anonymised request replaces its raw-id records within
	// the topic's compaction bound even on a quiet partition
	// (PIPELINE_REQUEST_HEARTBEAT_INTERVAL; 0: none).
	Heartbeat time.Duration
}

// Service follows privacy.requests and carries the requests out.
type Service struct {
	cfg       Config
	ready     atomic.Bool
	done      atomic.Int64
	lastGauge time.Time
	lastBeat  time.Time
	beats     *kgo.Client
}

// Done returns how many requests this service carried out since it
// started.
func (s *Service) Done() int64 { return s.done.Load() }

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Topic == "" || cfg.Group == "" || cfg.Store == nil || cfg.Eraser == nil || cfg.Exporter == nil || cfg.Mark == nil {
		return nil, errors.New("fulfil: Topic, Group, Store, Eraser, Exporter and Mark are required")
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return nil, fmt.Errorf("fulfil: %w", err)
	}
	if cfg.ExportTTL <= 0 {
		cfg.ExportTTL = 7 * 24 * time.Hour
	}
	if cfg.Name == "" {
		cfg.Name = "requests"
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GaugeEvery <= 0 {
		cfg.GaugeEvery = 15 * time.Second
	}
	return &Service{cfg: cfg}, nil
}

// Ready reports whether the service follows the topic.
func (s *Service) Ready() bool { return s.ready.Load() }

// Run follows the topic until ctx ends; errors are logged and retried.
// When the store has lost the requests (no loaded marker: a flushed or new
// Redis), it first rebuilds them from the whole log (Rebuild).
func (s *Service) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		loaded, err := s.cfg.Store.Loaded(ctx)
		if err == nil && !loaded {
			err = s.Rebuild(ctx)
		}
		if err == nil {
			err = s.follow(ctx)
		}
		if ctx.Err() != nil {
			break
		}
		s.ready.Store(false)
		s.cfg.Metrics.Pauses.Inc()
		s.cfg.Log.Warn("requests service interrupted; resuming", "err", err)
		sleep(ctx, backoff)
		backoff = min(2*backoff, 5*time.Second)
	}
	s.ready.Store(false)
	return nil
}

func (s *Service) follow(ctx context.Context) error {
	cl, err := s.cfg.Kafka.NewClient(kgo.ConsumerGroup(s.cfg.Group), kgo.ConsumeTopics(s.cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(), kgo.FetchMaxWait(200*time.Millisecond), kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	if s.cfg.Heartbeat > 0 && s.beats == nil {
		if s.beats, err = s.cfg.Kafka.NewClient(kgo.RecordPartitioner(kgo.ManualPartitioner())); err != nil {
			return err
		}
		defer func() { s.beats.Close(); s.beats = nil }()
	}
	for ctx.Err() == nil {
		if err := s.gauges(ctx, false); err != nil {
			return err
		}
		s.heartbeat(ctx)
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return fmt.Errorf("fulfil: fetch %s: %w", fe.Topic, fe.Err)
			}
		}
		var herr error
		fs.EachRecord(func(r *kgo.Record) {
			if herr == nil {
				herr = s.handle(ctx, cl, r)
			}
		})
		if herr != nil {
			return herr // uncommitted: handled again after the retry
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			return fmt.Errorf("fulfil: commit: %w", err)
		}
		s.ready.Store(true)
	}
	return nil
}

// Rebuild restores the store from the whole request log (the source of
// truth: the latest record per request id), then carries out the
// requests it finds verified but not finished (their records were
// committed before the store lost them), then sets the loaded marker.
// Invalid records are counted (malformed) and skipped.
func (s *Service) Rebuild(ctx context.Context) error {
	var restored int
	var rerr error
	err := kafkaio.Scan(ctx, s.cfg.Kafka, func(rec *kgo.Record) {
		if rerr != nil || rec.Value == nil {
			return
		}
		r, err := requests.Parse(rec.Value)
		if err != nil || string(rec.Key) != r.ID {
			s.cfg.Metrics.Outcome("malformed")
			return
		}
		ok, err := s.cfg.Store.Restore(ctx, r)
		if err != nil {
			rerr = err
		} else if ok {
			restored++
		}
	}, s.cfg.Topic)
	if err = errors.Join(err, rerr); err != nil {
		return fmt.Errorf("fulfil: rebuild: %w", err)
	}
	open, err := s.cfg.Store.Due(ctx, s.cfg.Now(), -1, 0)
	if err != nil {
		return err
	}
	cl, err := s.cfg.Kafka.NewClient(kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	for _, r := range open {
		if r.Runnable() {
			if err := s.run(ctx, cl, r); err != nil {
				return err
			}
		}
	}
	s.cfg.Metrics.Rebuilds.Inc()
	s.cfg.Log.Info("request store rebuilt from the request log", "topic", s.cfg.Topic, "requests", restored, "open", len(open))
	return s.cfg.Store.MarkLoaded(ctx)
}

// handle applies one record of the log. It returns an error only for what
// a retry can fix (a store or the broker not answering).
func (s *Service) handle(ctx context.Context, cl *kgo.Client, rec *kgo.Record) error {
	m := s.cfg.Metrics
	if rec.Value == nil {
		if string(rec.Key) != kafkaio.HeartbeatKey {
			m.Outcome("tombstone")
		}
		return nil
	}
	r, err := requests.Parse(rec.Value)
	if err != nil || string(rec.Key) != r.ID {
		m.Outcome("malformed")
		s.cfg.Log.Warn("privacy.requests record is not a valid request; skipped", "partition", rec.Partition, "offset", rec.Offset, "err", errText(err))
		return nil
	}
	cur, err := s.cfg.Store.Get(ctx, r.ID)
	switch {
	case errors.Is(err, requestredis.ErrNotFound):
		// Written straight to the topic, or a store rebuilt from the log.
		created, old, err := s.cfg.Store.Create(ctx, r)
		if err != nil {
			return err
		}
		if !created {
			cur = old
		} else {
			cur = r
			m.Outcome("filed")
		}
	case err != nil:
		return err
	case !s.same(cur, r):
		m.Outcome("conflict")
		s.cfg.Log.Warn("privacy.requests record reuses a request id for another request; skipped", "request", r.ID)
		return nil
	case r.Version > cur.Version:
		// A change logged (the API's verify, extend, refuse) that the
		// store does not show yet.
		if err := s.cfg.Store.Update(ctx, r, cur.Version); err != nil && !errors.Is(err, requestredis.ErrStale) {
			return err
		}
		if cur, err = s.cfg.Store.Get(ctx, r.ID); err != nil {
			return err
		}
	default:
		m.Outcome("seen")
		if cur.Subject == "" && r.Subject != "" {
			// A replay of an erased subject's request, raw id and all:
			// log the anonymised state again, so the latest record under
			// the id (what compaction keeps) holds no raw id.
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: s.cfg.Topic, Key: []byte(cur.ID), Value: cur.Marshal()}).FirstErr(); err != nil {
				return fmt.Errorf("fulfil: log request %s: %w", cur.ID, err)
			}
		}
	}
	if !cur.Runnable() {
		return nil
	}
	return s.run(ctx, cl, cur)
}

// same reports whether the record r is the stored request cur (or a
// change of it), comparing an erased subject by its mark.
func (s *Service) same(cur, r requests.Request) bool {
	if cur.ID != r.ID || cur.Kind != r.Kind {
		return false
	}
	switch {
	case cur.Subject != "" && r.Subject != "":
		return cur.Subject == r.Subject
	case cur.Subject == "" && r.Subject != "":
		return s.cfg.Mark(r.Subject) == cur.SubjectMark
	case cur.Subject != "" && r.Subject == "":
		return s.cfg.Mark(cur.Subject) == r.SubjectMark
	}
	return cur.SubjectMark == r.SubjectMark
}

// run carries out a verified request and logs each step.
func (s *Service) run(ctx context.Context, cl *kgo.Client, r requests.Request) error {
	now := s.cfg.Now()
	if r.Status != requests.InProgress {
		next, err := r.Start(s.cfg.Name, now)
		if err != nil {
			return nil
		}
		if r, err = s.save(ctx, cl, next, r.Version); err != nil {
			return err
		}
	}
	var (
		summary map[string]int64
		logged  []requests.Request
		err     error
	)
	switch r.Kind {
	case requests.Erasure:
		summary, logged, r, err = s.erase(ctx, r)
	default:
		summary, r, err = s.export(ctx, cl, r)
	}
	if err != nil {
		s.cfg.Metrics.Failures.WithLabelValues(string(r.Kind)).Inc()
		return fmt.Errorf("fulfil: %s %s: %w", r.Kind, r.ID, err)
	}
	done, err := r.Finish(s.cfg.Name, summary, s.cfg.Now())
	if err != nil {
		return nil
	}
	if r.Kind.Exports() {
		done.ExportExpiresMS = s.cfg.Now().Add(s.cfg.ExportTTL).UnixMilli()
	}
	if _, err := s.save(ctx, cl, done, r.Version, logged...); err != nil {
		return err
	}
	s.cfg.Metrics.Done.WithLabelValues(string(r.Kind), string(r.Regime)).Inc()
	s.done.Add(1)
	s.cfg.Metrics.Seconds.WithLabelValues(string(r.Kind)).Observe(float64(done.DoneMS-done.ReceivedMS) / 1000)
	s.cfg.Log.Info("request done", "request", r.ID, "kind", r.Kind, "regime", r.Regime)
	return s.gauges(ctx, true)
}

// erase erases the subject, then replaces its raw id in every request
// (the store's and, by logging them, the topic's). A retry after the
// raw id is gone finds the subject erased already.
func (s *Service) erase(ctx context.Context, r requests.Request) (map[string]int64, []requests.Request, requests.Request, error) {
	if r.Subject == "" {
		return map[string]int64{"already_erased": 1}, nil, r, nil
	}
	summary, err := s.cfg.Eraser.Erase(ctx, r.Subject, r.ID)
	if err != nil {
		return nil, nil, r, err
	}
	mark := s.cfg.Mark(r.Subject)
	rewritten, err := s.cfg.Store.ForgetSubject(ctx, r.Subject, mark)
	if err != nil {
		return nil, nil, r, err
	}
	var others []requests.Request
	for _, o := range rewritten {
		if o.ID == r.ID {
			r = o // the same request, anonymised (its version moved on)
		} else {
			others = append(others, o)
		}
	}
	if r.Subject != "" { // not indexed under the subject (cannot happen): anonymise it here
		r = r.Anonymise(mark)
	}
	return summary, others, r, nil
}

// export builds and stores the document, reporting progress on the
// request (at most every second).
func (s *Service) export(ctx context.Context, cl *kgo.Client, r requests.Request) (map[string]int64, requests.Request, error) {
	reqs, err := s.cfg.Store.BySubject(ctx, r.Subject)
	if err != nil {
		return nil, r, err
	}
	last := time.Time{}
	doc, summary, err := s.cfg.Exporter.Export(ctx, r.Subject, reqs, func(f float64) {
		if now := s.cfg.Now(); now.Sub(last) >= time.Second && f < 1 {
			last = now
			next := r
			next.Progress = math.Round(f*1000) / 1000
			next.Version++
			if saved, err := s.save(ctx, cl, next, r.Version); err == nil {
				r = saved
			}
		}
	})
	if err != nil {
		return nil, r, err
	}
	if err := s.cfg.Store.PutExport(ctx, r.ID, doc, s.cfg.ExportTTL); err != nil {
		return nil, r, err
	}
	if summary == nil {
		summary = map[string]int64{}
	}
	summary["bytes"] = int64(len(doc))
	return summary, r, nil
}

// save stores next (compare-and-set on prev) and logs it with extra
// changes, in one produce.
func (s *Service) save(ctx context.Context, cl *kgo.Client, next requests.Request, prev int64, extra ...requests.Request) (requests.Request, error) {
	if err := s.cfg.Store.Update(ctx, next, prev); err != nil {
		return next, err
	}
	recs := []*kgo.Record{{Topic: s.cfg.Topic, Key: []byte(next.ID), Value: next.Marshal()}}
	if s.cfg.AuditTopic != "" && next.Progress == 0 { // progress updates are not status changes
		mark := ""
		if next.Subject != "" {
			mark = s.cfg.Mark(next.Subject)
		}
		ar := next.Audit(s.cfg.Now(), s.cfg.Name, s.cfg.Name, mark)
		b, err := audit.Encode(ar)
		if err != nil {
			return next, fmt.Errorf("fulfil: audit record: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: s.cfg.AuditTopic, Key: ar.Key(), Value: b})
	}
	for _, o := range extra {
		recs = append(recs, &kgo.Record{Topic: s.cfg.Topic, Key: []byte(o.ID), Value: o.Marshal()})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return next, fmt.Errorf("fulfil: log request %s: %w", next.ID, err)
	}
	return next, nil
}

// heartbeat writes a compaction heartbeat round when one is due (a
// failure is counted and retried at the next interval).
func (s *Service) heartbeat(ctx context.Context) {
	if s.beats == nil || s.cfg.Now().Sub(s.lastBeat) < s.cfg.Heartbeat {
		return
	}
	s.lastBeat = s.cfg.Now()
	n, err := kafkaio.Heartbeat(ctx, s.beats, s.cfg.Topic)
	s.cfg.Metrics.Heartbeats.Add(float64(n))
	if err != nil && ctx.Err() == nil {
		s.cfg.Metrics.HeartbeatFailures.Inc()
		s.cfg.Log.Warn("requests topic heartbeat failed; retried at the next interval", "err", err)
	}
}

// gauges recomputes the open requests' gauges (every GaugeEvery, or now).
func (s *Service) gauges(ctx context.Context, force bool) error {
	now := s.cfg.Now()
	if !force && now.Sub(s.lastGauge) < s.cfg.GaugeEvery {
		return nil
	}
	open, err := s.cfg.Store.Due(ctx, now, -1, 0)
	if err != nil {
		return err
	}
	s.lastGauge = now
	s.cfg.Metrics.SetOpen(open, now)
	return nil
}

func errText(err error) string {
	if err == nil {
		return "the record key is not the request's id"
	}
	return err.Error()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
