// Package requestredis keeps the data-subject requests' current state in
// Redis, where the API and the privacy team read it: one string per
// request (prefix + id, its JSON), a sorted set of the open requests by
// deadline (prefix without its colon + "-open"), a set of each subject's
// request ids (+ "-subject:" + subject id), and the export documents of
// finished access requests (+ "-export:" + id, with a time to live).
//
// privacy.requests (compacted, keyed by request id) is the log of every
// change; this store is its current view. The API creates a request here
// first (SET NX: an id is filed once, so a replay is recognised) and then
// logs it; every later change is a compare-and-set on the request's
// version, so two writers never lose each other's change.
//
// It imports requests and go-redis.
package requestredis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/internal/requests"
)

// DefaultPrefix is the key prefix (PIPELINE_REQUEST_KEY_PREFIX).
const DefaultPrefix = "pp:rq:"

// ErrStale is returned by Update when the stored request changed since
// the caller read it (its version is not the one before the update).
var ErrStale = errors.New("requestredis: the request changed meanwhile; read it again")

// ErrNotFound is returned for an unknown request id.
var ErrNotFound = errors.New("requestredis: no such request")

// Store is the requests' state. It is safe for concurrent use.
type Store struct {
	rdb                               redis.UniversalClient
	prefix, open, subj, xport, loaded string
}

// New returns a store on rdb with the key prefix (DefaultPrefix when
// empty).
func New(rdb redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	base := strings.TrimSuffix(prefix, ":")
	return &Store{rdb: rdb, prefix: prefix, open: base + "-open", subj: base + "-subject:", xport: base + "-export:", loaded: base + "-loaded"}
}

// create: SET NX the request; on success index it (open set, subject set).
var create = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4]) end
  if KEYS[3] ~= '' then redis.call('SADD', KEYS[3], ARGV[4]) end
  return false
end
return redis.call('GET', KEYS[1])
`)

// Create stores a new request. When its id is taken, it stores nothing
// and returns the request filed under it (created false): a replay, or a
// conflict when !existing.Same(r).
func (s *Store) Create(ctx context.Context, r requests.Request) (created bool, existing requests.Request, err error) {
	subj := ""
	if r.Subject != "" {
		subj = s.subj + r.Subject
	}
	open := "0"
	if r.Open() {
		open = "1"
	}
	v, err := create.Run(ctx, s.rdb, []string{s.prefix + r.ID, s.open, subj},
		r.Marshal(), r.DeadlineMS, open, r.ID).Text()
	if errors.Is(err, redis.Nil) {
		return true, r, nil
	}
	if err != nil {
		return false, requests.Request{}, fmt.Errorf("requestredis: create: %w", err)
	}
	old, err := requests.Parse([]byte(v))
	if err != nil {
		return false, requests.Request{}, fmt.Errorf("requestredis: stored request %s: %w", r.ID, err)
	}
	return false, old, nil
}

// Get returns a request.
func (s *Store) Get(ctx context.Context, id string) (requests.Request, error) {
	v, err := s.rdb.Get(ctx, s.prefix+id).Bytes()
	if errors.Is(err, redis.Nil) {
		return requests.Request{}, ErrNotFound
	}
	if err != nil {
		return requests.Request{}, fmt.Errorf("requestredis: get: %w", err)
	}
	r, err := requests.Parse(v)
	if err != nil {
		return requests.Request{}, fmt.Errorf("requestredis: stored request %s: %w", id, err)
	}
	return r, nil
}

// update: compare the stored version (ARGV[5]) with the one the caller
// read, then set and reindex.
var update = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 'missing' end
local ok, dec = pcall(cjson.decode, cur)
if not ok or tostring(dec['version']) ~= ARGV[5] then return 'stale' end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4]) else redis.call('ZREM', KEYS[2], ARGV[4]) end
return 'ok'
`)

// Update replaces a request by its next state r; prevVersion is the
// version it had when read (r.Version is then larger). ErrStale when it
// changed meanwhile, ErrNotFound when it is not stored.
func (s *Store) Update(ctx context.Context, r requests.Request, prevVersion int64) error {
	if err := r.Validate(); err != nil {
		return err
	}
	open := "0"
	if r.Open() {
		open = "1"
	}
	res, err := update.Run(ctx, s.rdb, []string{s.prefix + r.ID, s.open},
		r.Marshal(), r.DeadlineMS, open, r.ID, prevVersion).Text()
	switch {
	case err != nil:
		return fmt.Errorf("requestredis: update: %w", err)
	case res == "missing":
		return ErrNotFound
	case res == "stale":
		return ErrStale
	}
	return nil
}

// Delete removes a request that was created but could not be logged (the
// API's rollback), with its index entries.
func (s *Store) Delete(ctx context.Context, r requests.Request) error {
	p := s.rdb.TxPipeline()
	p.Del(ctx, s.prefix+r.ID)
	p.ZRem(ctx, s.open, r.ID)
	if r.Subject != "" {
		p.SRem(ctx, s.subj+r.Subject, r.ID)
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("requestredis: delete: %w", err)
	}
	return nil
}

// Due returns the open requests whose deadline is before now+within,
// earliest first (within < 0: every open request), at most limit (0: no
// limit).
func (s *Store) Due(ctx context.Context, now time.Time, within time.Duration, limit int) ([]requests.Request, error) {
	max := "+inf"
	if within >= 0 {
		max = fmt.Sprint(now.Add(within).UnixMilli())
	}
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.open, Start: "-inf", Stop: max, ByScore: true, Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("requestredis: open requests: %w", err)
	}
	return s.many(ctx, ids)
}

// BySubject returns a subject's requests (none once it is erased).
func (s *Store) BySubject(ctx context.Context, subject string) ([]requests.Request, error) {
	ids, err := s.rdb.SMembers(ctx, s.subj+subject).Result()
	if err != nil {
		return nil, fmt.Errorf("requestredis: the subject's requests: %w", err)
	}
	return s.many(ctx, ids)
}

// many reads ids in one MGET, skipping ids no longer stored.
func (s *Store) many(ctx context.Context, ids []string) ([]requests.Request, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.prefix + id
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("requestredis: read %d requests: %w", len(ids), err)
	}
	out := make([]requests.Request, 0, len(vals))
	for _, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		r, err := requests.Parse([]byte(str))
		if err != nil {
			return nil, fmt.Errorf("requestredis: a stored request: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// PutExport stores an access request's document for ttl.
func (s *Store) PutExport(ctx context.Context, id string, doc []byte, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.xport+id, doc, ttl).Err(); err != nil {
		return fmt.Errorf("requestredis: store the export: %w", err)
	}
	return nil
}

// Export returns an access request's document (ErrNotFound once expired
// or erased).
func (s *Store) Export(ctx context.Context, id string) ([]byte, error) {
	b, err := s.rdb.Get(ctx, s.xport+id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("requestredis: read the export: %w", err)
	}
	return b, nil
}

// ForgetSubject is the requests' part of an erasure: every request of the
// subject is rewritten with mark in place of its raw id, its export
// documents and its subject set are deleted. It returns the rewritten
// requests (to log them, so compaction removes the raw id from
// privacy.requests too).
func (s *Store) ForgetSubject(ctx context.Context, subject, mark string) ([]requests.Request, error) {
	rs, err := s.BySubject(ctx, subject)
	if err != nil {
		return nil, err
	}
	p := s.rdb.TxPipeline()
	out := make([]requests.Request, 0, len(rs))
	for _, r := range rs {
		a := r.Anonymise(mark)
		a.Version++ // a writer that read the raw id's version now fails (ErrStale)
		out = append(out, a)
		p.Set(ctx, s.prefix+a.ID, a.Marshal(), 0)
		p.Del(ctx, s.xport+a.ID)
	}
	p.Del(ctx, s.subj+subject)
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("requestredis: forget the subject's requests: %w", err)
	}
	return out, nil
}

// Loaded reports whether the store holds the request log (its loaded
// marker, set by MarkLoaded after a rebuild; a flushed or new Redis has
// none).
func (s *Store) Loaded(ctx context.Context) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.loaded).Result()
	if err != nil {
		return false, fmt.Errorf("requestredis: loaded marker: %w", err)
	}
	return n == 1, nil
}

// MarkLoaded sets the loaded marker.
func (s *Store) MarkLoaded(ctx context.Context) error {
	if err := s.rdb.Set(ctx, s.loaded, "1", 0).Err(); err != nil {
		return fmt.Errorf("requestredis: loaded marker: %w", err)
	}
	return nil
}

// restore: store ARGV[1] when nothing or an older version is stored, and
// index it; returns 1 when stored.
var restore = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, dec = pcall(cjson.decode, cur)
  if ok and tonumber(dec['version']) ~= nil and tonumber(dec['version']) >= tonumber(ARGV[5]) then return 0 end
  -- a later version without the raw id (the subject erased) leaves the
  -- subject's set
  if ok and KEYS[3] == '' and type(dec['subject_id']) == 'string' then
    redis.call('SREM', ARGV[6] .. dec['subject_id'], ARGV[4])
  end
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4]) else redis.call('ZREM', KEYS[2], ARGV[4]) end
if KEYS[3] ~= '' then redis.call('SADD', KEYS[3], ARGV[4]) end
return 1
`)

// Restore stores a request read back from the log (a rebuild) unless the
// store holds the same or a later version of it; it reports whether it
// stored it.
func (s *Store) Restore(ctx context.Context, r requests.Request) (bool, error) {
	if err := r.Validate(); err != nil {
		return false, err
	}
	subj := ""
	if r.Subject != "" {
		subj = s.subj + r.Subject
	}
	open := "0"
	if r.Open() {
		open = "1"
	}
	n, err := restore.Run(ctx, s.rdb, []string{s.prefix + r.ID, s.open, subj}, r.Marshal(), r.DeadlineMS, open, r.ID, r.Version, s.subj).Int()
	if err != nil {
		return false, fmt.Errorf("requestredis: restore: %w", err)
	}
	return n == 1, nil
}
