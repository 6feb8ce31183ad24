// Package consentsync materialises the consent topic (privacy.consent, the
// source of truth) into Redis, the processors' consent store:
//
//   - each change is applied by a Lua script, atomically and only if it is
//     newer than what Redis holds for that subject and purpose (or, for the
//     jurisdiction and the GPC signal, newer than the change that recorded
//     them), so replays, duplicates and out-of-order deliveries never let
//     an older change overwrite a newer one; a subject-level change alone
//     creates the subject's record, so the subject is no longer unknown;
//   - each applied change is appended to the subject's history list;
//   - the changed subjects are announced with consentredis's invalidation
//     protocol, and every privacy processor drops its cached entries for
//     them;
//   - Rebuild restores Redis from the topic from scratch (after Redis lost
//     its data); while it runs the loaded marker is absent, so processors
//     pause (fail closed) until it completes. Run rebuilds automatically
//     whenever it finds the marker missing.
//
// It imports consent, consentlog, consentredis, kafkaconn, kafkaio,
// go-redis (for the script) and franz-go.
package consentsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
)

// applyScript applies one change with the merge rules of consent.Record
// (Apply and ApplyProfile; consentlog.Change.ApplyTo): each slot of the
// record (a purpose's state, the jurisdiction, the GPC signal) is
// newer-wins on its own, a tie goes to the stricter value (withdrawn over
// denied over granted, GPC on over off, an opt-in jurisdiction over ccpa,
// opt-in ones by a fixed rank), and the version becomes the newest
// timestamp applied. A test checks that the script and the Go methods
// agree, in any order of changes.
//
// KEYS: subject key, history key. ARGV: slot (0 for a subject-level change,
// 1-5 for a purpose), state code (g/d/w; - for a subject-level change),
// timestamp ms, jurisdiction (unknown: not given), gpc ("" not given, 1 on,
// 0 off), history entry, history cap. Returns 1 if anything was applied
// (the record is written, created if absent, and the entry added to the
// history), 0 if the change was not newer than anything.
//
// It reads the stored format of consent.Decode, version 1
// (1|<jur>|<gpc>|<version>|<s>:<ms> x5) or 2, and writes version 2
// (consent.AppendEncoded):
// 2|<jur>|<jur ms>|<gpc>|<gpc ms>|<version>|<s>:<ms>|<s>:<ms>|<s>:<ms>|<s>:<ms>|<s>:<ms>
// A record it cannot read (corrupt) is replaced by one made from the change.
var applyScript = redis.NewScript(`
local jrank = {unknown = 0, ccpa = 1, gdpr = 3, uk_gdpr = 4, pdpa = 5, vn_decree13 = 6}
local srank = {['-'] = 0, g = 1, d = 2, w = 3}
local function isint(s) return s ~= nil and string.match(s, '^%-?%d+$') ~= nil end
local function parse(cur)
  if not cur then return nil end
  local p = {}
  for f in (cur .. '|'):gmatch('([^|]*)|') do p[#p + 1] = f end
  local r
  if p[1] == '2' and #p == 11 then
    r = {jur = p[2], jurms = p[3], gpc = p[4], gpcms = p[5], ver = p[6], first = 7}
  elseif p[1] == '1' and #p == 9 then
    r = {jur = p[2], gpc = p[3], ver = p[4], first = 5, jurms = '0', gpcms = '0'}
    if p[2] ~= 'unknown' then r.jurms = p[4] end
    if p[3] == '1' then r.gpcms = p[4] end
  else
    return nil
  end
  if jrank[r.jur] == nil or (r.gpc ~= '0' and r.gpc ~= '1') or not isint(r.jurms) or not isint(r.gpcms) or not isint(r.ver) then
    return nil
  end
  r.st, r.ms = {}, {}
  for i = 1, 5 do
    local st, ms = string.match(p[r.first + i - 1], '^([%-gdw]):(%-?%d+)$')
    if st == nil then return nil end
    r.st[i], r.ms[i] = st, ms
  end
  return r
end
local r = parse(redis.call('GET', KEYS[1]))
if r == nil then
  r = {jur = 'unknown', jurms = '0', gpc = '0', gpcms = '0', ver = '0', st = {'-', '-', '-', '-', '-'}, ms = {'0', '0', '0', '0', '0'}}
end
local slot, code, ts, jur, gpc = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local t = tonumber(ts)
local changed = false
if slot >= 1 and slot <= 5 and srank[code] ~= nil and code ~= '-' then
  local cst, cms = r.st[slot], tonumber(r.ms[slot])
  if cst == '-' or t > cms or (t == cms and srank[code] > srank[cst]) then
    r.st[slot], r.ms[slot] = code, ts
    changed = true
  end
end
if jur ~= 'unknown' and jrank[jur] ~= nil then
  local cms = tonumber(r.jurms)
  if t > cms or (t == cms and jrank[jur] > jrank[r.jur]) then
    r.jur, r.jurms = jur, ts
    changed = true
  end
end
if gpc == '1' or gpc == '0' then
  local cms = tonumber(r.gpcms)
  if t > cms or (t == cms and gpc == '1' and r.gpc == '0') then
    r.gpc, r.gpcms = gpc, ts
    changed = true
  end
end
if not changed then return 0 end
if t > tonumber(r.ver) then r.ver = ts end
local out = {'2', r.jur, r.jurms, r.gpc, r.gpcms, r.ver}
for i = 1, 5 do out[#out + 1] = r.st[i] .. ':' .. r.ms[i] end
redis.call('SET', KEYS[1], table.concat(out, '|'))
redis.call('LPUSH', KEYS[2], ARGV[6])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[7]) - 1)
return 1
`)

var stateCode = map[consent.State]string{consent.Granted: "g", consent.Denied: "d", consent.Withdrawn: "w"}

var gpcArg = [...]string{consent.GPCNotGiven: "", consent.GPCOn: "1", consent.GPCOff: "0"}

// scriptArgs returns the script's ARGV for c, except the history entry and
// cap: slot, state code, timestamp, jurisdiction, gpc.
func scriptArgs(c *consentlog.Change) (slot int, code string, ms int64, jur, gpc string) {
	slot, code = 0, "-"
	if !c.IsSubjectLevel() {
		slot, code = int(c.Purpose)+1, stateCode[c.State]
	}
	if c.GPC < consent.GPCValue(len(gpcArg)) {
		gpc = gpcArg[c.GPC]
	}
	return slot, code, c.Timestamp.UnixMilli(), c.Jurisdiction.String(), gpc
}

// Entry returns the history entry of a change, as the sync appends it to
// the subject's history list.
func Entry(c *consentlog.Change) consent.HistoryEntry {
	e := consent.HistoryEntry{ReceiptID: c.ReceiptID, SubjectID: c.SubjectID, Jurisdiction: c.Jurisdiction.String(), Source: string(c.Source),
		PolicyVersion: c.PolicyVersion, Timestamp: c.Timestamp.UTC().Format(time.RFC3339Nano), GPC: consent.GPCTextOf(c.GPC), ChangedBy: c.Principal,
		ConsentString: c.Evidence}
	if !c.IsSubjectLevel() {
		e.Purpose, e.State = c.Purpose.String(), c.State.String()
	}
	return e
}

// Metrics of the sync.
type Metrics struct {
	Applied  prometheus.Counter
	Stale    prometheus.Counter
	Rejected *prometheus.CounterVec
	// Erased counts subjects deleted on a tombstone (erasure).
	Erased   prometheus.Counter
	Rebuilds prometheus.Counter
	Lag      prometheus.Histogram
}

// NewMetrics creates and registers the sync's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Applied: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "consent_sync", Name: "applied_total",
			Help: "Consent changes written to Redis."}),
		Stale: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "consent_sync", Name: "stale_total",
			Help: "Consent changes ignored because Redis already held a newer one (replays, duplicates, and the subject-level companion of a choice that carries a jurisdiction or GPC value)."}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "consent_sync", Name: "rejected_total",
			Help: "Consent topic records that could not be decoded or validated, by reason."}, []string{"reason"}),
		Erased: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "consent_sync", Name: "erased_total",
			Help: "Subjects whose consent state and history were deleted on a tombstone of the consent topic (erasure)."}),
		Rebuilds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pipeline", Subsystem: "consent_sync", Name: "rebuilds_total",
			Help: "Full rebuilds of Redis from the consent topic."}),
		Lag: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "pipeline", Subsystem: "consent_sync", Name: "apply_lag_seconds",
			Help: "Time from a change's record timestamp in Kafka to its application in Redis.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
	}
	m.Rejected.WithLabelValues("invalid")
	reg.MustRegister(m.Applied, m.Stale, m.Rejected, m.Erased, m.Rebuilds, m.Lag)
	return m
}

// Config configures a Syncer.
type Config struct {
	// Kafka is the connection the syncer's clients are built from.
	Kafka      kafkaconn.Config
	Topic      string
	Group      string
	Store      *consentredis.RedisStore
	HistoryCap int // entries kept per subject (default 1000)
	Log        *slog.Logger
	Metrics    *Metrics
}

// Syncer materialises the consent topic into Redis.
type Syncer struct {
	cfg     Config
	rdb     redis.UniversalClient
	applied atomic.Uint64
	ready   atomic.Bool
}

// New returns a syncer.
func New(cfg Config) (*Syncer, error) {
	if cfg.Topic == "" || cfg.Group == "" || cfg.Store == nil {
		return nil, errors.New("consentsync: Kafka, Topic, Group and Store are required")
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return nil, fmt.Errorf("consentsync: %w", err)
	}
	if cfg.HistoryCap <= 0 {
		cfg.HistoryCap = 1000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &Syncer{cfg: cfg, rdb: cfg.Store.Client()}, nil
}

// Applied returns the number of changes written to Redis.
func (s *Syncer) Applied() uint64 { return s.applied.Load() }

// Ready reports whether Redis holds a complete copy and the sync is running.
func (s *Syncer) Ready() bool { return s.ready.Load() }

// Apply writes a batch of changes to Redis in one pipelined round trip and
// announces the changed subjects. records are the Kafka records (for their
// timestamps); they may be nil.
func (s *Syncer) Apply(ctx context.Context, changes []consentlog.Change, recordTimes []time.Time) (int, error) {
	if len(changes) == 0 {
		return 0, nil
	}
	n, err := s.apply(ctx, changes, recordTimes)
	if err != nil && strings.Contains(err.Error(), "NOSCRIPT") {
		// Redis restarted and lost its script cache: load it and retry;
		// the script is idempotent per change.
		if lerr := applyScript.Load(ctx, s.rdb).Err(); lerr != nil {
			return 0, fmt.Errorf("consentsync: load script: %w", lerr)
		}
		n, err = s.apply(ctx, changes, recordTimes)
	}
	return n, err
}

func (s *Syncer) apply(ctx context.Context, changes []consentlog.Change, recordTimes []time.Time) (int, error) {
	st := s.cfg.Store
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(changes))
	for i := range changes {
		c := &changes[i]
		entry, _ := json.Marshal(Entry(c))
		slot, code, ms, jur, gpc := scriptArgs(c)
		cmds[i] = applyScript.EvalSha(ctx, pipe, []string{st.Key(c.SubjectID), st.HistoryKey(c.SubjectID)},
			slot, code, ms, jur, gpc, string(entry), s.cfg.HistoryCap)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("consentsync: apply %d changes: %w", len(changes), err)
	}
	applied := 0
	var changed []string
	seen := map[string]bool{}
	for i, cmd := range cmds {
		n, err := cmd.Int()
		if err != nil {
			return applied, fmt.Errorf("consentsync: apply: %w", err)
		}
		if n == 1 {
			applied++
			if !seen[changes[i].SubjectID] {
				seen[changes[i].SubjectID] = true
				changed = append(changed, changes[i].SubjectID)
			}
			if i < len(recordTimes) && !recordTimes[i].IsZero() {
				s.cfg.Metrics.Lag.Observe(time.Since(recordTimes[i]).Seconds())
			}
		} else {
			s.cfg.Metrics.Stale.Inc()
		}
	}
	s.cfg.Metrics.Applied.Add(float64(applied))
	s.applied.Add(uint64(applied))
	if len(changed) > 0 {
		if err := st.PublishInvalidation(ctx, changed); err != nil {
			return applied, fmt.Errorf("consentsync: publish invalidation: %w", err)
		}
	}
	return applied, nil
}

// decode returns the changes of recs and the subjects of their tombstones
// (an erasure: applied after the batch's changes, so that a change still
// in flight when the subject was erased does not survive it).
func (s *Syncer) decode(recs []*kgo.Record) ([]consentlog.Change, []time.Time, []string) {
	changes := make([]consentlog.Change, 0, len(recs))
	times := make([]time.Time, 0, len(recs))
	var erased []string
	for _, r := range recs {
		if r.Value == nil {
			if sub := consentlog.SubjectOfKey(r.Key); sub != "" && !slices.Contains(erased, sub) {
				erased = append(erased, sub)
			}
			continue
		}
		c, err := consentlog.Decode(r.Value)
		if err != nil {
			s.cfg.Metrics.Rejected.WithLabelValues("invalid").Inc()
			s.cfg.Log.Warn("consent record rejected", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			continue
		}
		c.Principal, c.Evidence = consentlog.PrincipalOf(r), consentlog.EvidenceOf(r)
		changes = append(changes, c)
		times = append(times, r.Timestamp)
	}
	return changes, times, erased
}

// erase deletes the consent state and history of erased subjects.
func (s *Syncer) erase(ctx context.Context, subjects []string) error {
	for _, sub := range subjects {
		if _, err := s.cfg.Store.Delete(ctx, sub); err != nil {
			return err
		}
		s.cfg.Metrics.Erased.Inc()
	}
	return nil
}

// Rebuild restores Redis from the consent topic from scratch: it removes
// the loaded marker (processors pause), deletes every consent and history
// key, replays the topic to its end, and sets the marker.
func (s *Syncer) Rebuild(ctx context.Context) error {
	st := s.cfg.Store
	lock := strings.TrimSuffix(st.Prefix(), ":") + "-rebuild-lock"
	ok, err := s.rdb.SetNX(ctx, lock, "1", 10*time.Minute).Result()
	if err != nil {
		return fmt.Errorf("consentsync: rebuild lock: %w", err)
	}
	if !ok {
		return errors.New("consentsync: another rebuild is running")
	}
	defer s.rdb.Del(context.WithoutCancel(ctx), lock)
	s.ready.Store(false)
	start := time.Now()
	s.cfg.Log.Info("consent store rebuild started")
	if err := s.rdb.Del(ctx, st.MarkerKey()).Err(); err != nil {
		return fmt.Errorf("consentsync: rebuild: %w", err)
	}
	for _, pattern := range []string{st.Prefix() + "*", st.HistoryKey("") + "*"} {
		if err := s.deleteMatching(ctx, pattern); err != nil {
			return err
		}
	}
	var batch []*kgo.Record
	var applyErr error
	total := 0
	flush := func() {
		if len(batch) == 0 || applyErr != nil {
			return
		}
		changes, _, erased := s.decode(batch)
		n, err := s.Apply(ctx, changes, nil)
		if err == nil {
			err = s.erase(ctx, erased)
		}
		total += n
		applyErr = err
		batch = batch[:0]
	}
	err = kafkaio.Scan(ctx, s.cfg.Kafka, func(r *kgo.Record) {
		batch = append(batch, r)
		if len(batch) == 2000 {
			flush()
		}
	}, s.cfg.Topic)
	flush()
	if err := errors.Join(err, applyErr); err != nil {
		return fmt.Errorf("consentsync: rebuild: %w", err)
	}
	if err := st.MarkLoaded(ctx); err != nil {
		return err
	}
	s.cfg.Metrics.Rebuilds.Inc()
	s.cfg.Log.Info("consent store rebuilt", "changes_applied", total, "seconds", time.Since(start).Seconds())
	return nil
}

func (s *Syncer) deleteMatching(ctx context.Context, pattern string) error {
	iter := s.rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			if err := s.rdb.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
			keys = keys[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("consentsync: scan %s: %w", pattern, err)
	}
	if len(keys) > 0 {
		return s.rdb.Unlink(ctx, keys...).Err()
	}
	return nil
}

// Run follows the consent topic in its consumer group, applying each
// polled batch and committing its offsets after Redis acknowledged it. It
// rebuilds first when forced or when the loaded marker is missing, and
// again whenever the marker disappears (Redis restarted empty).
func (s *Syncer) Run(ctx context.Context, forceRebuild bool) error {
	needRebuild := func() bool {
		n, err := s.rdb.Exists(ctx, s.cfg.Store.MarkerKey()).Result()
		return err == nil && n == 0
	}
	for ctx.Err() == nil {
		if forceRebuild || needRebuild() {
			if err := s.Rebuild(ctx); err != nil {
				s.cfg.Log.Warn("consent store rebuild failed; retrying", "err", err)
				sleep(ctx, time.Second)
				continue
			}
			forceRebuild = false
		}
		err := s.follow(ctx, needRebuild)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			s.cfg.Log.Warn("consent sync interrupted; resuming", "err", err)
			sleep(ctx, time.Second)
		}
	}
	s.ready.Store(false)
	return nil
}

var errNeedRebuild = errors.New("consent store lost its data")

func (s *Syncer) follow(ctx context.Context, needRebuild func() bool) error {
	cl, err := s.cfg.Kafka.NewClient(kgo.ConsumerGroup(s.cfg.Group), kgo.ConsumeTopics(s.cfg.Topic),
		kgo.DisableAutoCommit(), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.Balancers(kgo.CooperativeStickyBalancer()))
	if err != nil {
		return err
	}
	defer cl.Close()
	s.ready.Store(true)
	lastCheck := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollRecords(pctx, 5000)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(lastCheck) > 500*time.Millisecond {
			lastCheck = time.Now()
			if needRebuild() {
				s.ready.Store(false)
				return errNeedRebuild
			}
		}
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		changes, times, erased := s.decode(recs)
		for {
			if _, err = s.Apply(ctx, changes, times); err == nil {
				err = s.erase(ctx, erased)
			}
			if err == nil {
				break
			}
			s.ready.Store(false)
			s.cfg.Log.Warn("consent sync cannot write to Redis; retrying", "err", err)
			if !sleep(ctx, 200*time.Millisecond) {
				return nil
			}
		}
		s.ready.Store(true)
		if err := cl.CommitRecords(ctx, recs...); err != nil {
			return fmt.Errorf("consentsync: commit: %w", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// FormatMillis formats unix ms as RFC 3339 (for API responses).
func FormatMillis(ms int64) string {
	if ms <= 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}
