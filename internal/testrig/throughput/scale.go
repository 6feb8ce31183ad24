package throughput

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// The sweeps of 'pipeline-dev bench throughput --sweep' (issue 16, part
// 3): how the job's cost grows. Each point is one short measurement (one
// round, its own topics and Redis keys) with one knob changed.
const (
	// SweepPurposes: 1-5 purposes granted (k clean records per event).
	SweepPurposes = "purposes"
	// SweepSubjects: 10k, 100k, 1M and 10M distinct subjects (the id
	// space the events draw from; consent stored for those that appear).
	SweepSubjects = "subjects"
	// SweepSize: raw events of 200 B to 4 KB.
	SweepSize = "size"
	// SweepReplicas: 1, 2 and 3 runner instances in this process, 12
	// partitions.
	SweepReplicas = "replicas"
	// SweepKanon: the k-anonymity processors on 1 and 4 partitions.
	SweepKanon = "kanon"
)

// Sweeps are every sweep, in the order they run.
var Sweeps = []string{SweepPurposes, SweepSubjects, SweepSize, SweepReplicas, SweepKanon}

// SweepOptions configure the sweeps.
type SweepOptions struct {
	Sweeps     []string // which (default Sweeps)
	Events     int      // raw events per point (default 100000)
	Subjects   int      // distinct subjects where they do not vary (default 50000)
	Partitions int      // where they do not vary (default 6)
	// Rounds per point (default 1): medians over them. A fresh topic set
	// sometimes stalls its first transactional writer for ~5 s after the
	// first commit; more rounds keep that out of the medians.
	Rounds int
	Log    io.Writer
}

// Scaling is the sweeps' result (Result.Scaling).
type Scaling struct {
	Events     int     `json:"events_per_point"`
	Rounds     int     `json:"rounds_per_point"`
	Subjects   int     `json:"subjects"`
	Partitions int     `json:"partitions"`
	Points     []Point `json:"points"`
}

// Point is one measurement of a sweep. X is the varied value (purposes,
// subjects, event bytes aimed at, replicas or partitions). The
// passthrough figures are measured at the point, or, where the knob does
// not change the passthrough's work (purposes, subjects), once at the
// sweep's first point and repeated (PassthroughAt says which X).
type Point struct {
	Sweep      string  `json:"sweep"`
	X          float64 `json:"x"`
	Events     int     `json:"events"`
	Subjects   int     `json:"subjects"`
	Partitions int     `json:"partitions"`
	EventBytes float64 `json:"event_bytes"`

	JobEPS             float64 `json:"job_events_per_s"`
	JobCPU             float64 `json:"job_cpu_us_per_event"`
	JobRSSMB           float64 `json:"job_peak_rss_mb"`
	RecordsPerEvent    float64 `json:"job_records_per_event"`
	RedisRoundTrips    float64 `json:"redis_round_trips_per_1000_events"`
	CacheHitRate       float64 `json:"consent_cache_hit_rate"`
	PassthroughEPS     float64 `json:"passthrough_tx_events_per_s,omitempty"`
	PassthroughCPU     float64 `json:"passthrough_tx_cpu_us_per_event,omitempty"`
	PassthroughAt      float64 `json:"passthrough_tx_at,omitempty"`
	JobOverPassthrough float64 `json:"job_over_passthrough_tx,omitempty"`

	// The k-anonymity processors (the kanon sweep): records/s and CPU per
	// input record.
	KanonAggRPS float64 `json:"kanon_aggregates_records_per_s,omitempty"`
	KanonAggCPU float64 `json:"kanon_aggregates_cpu_us_per_record,omitempty"`
	KanonRecRPS float64 `json:"kanon_records_records_per_s,omitempty"`
	KanonRecCPU float64 `json:"kanon_records_cpu_us_per_record,omitempty"`
}

// plan is a point to measure: its options and whether it measures the
// passthrough.
type plan struct {
	sweep       string
	x           float64
	opt         Options
	passthrough bool
}

// plans lays out the points of the sweeps.
func plans(o SweepOptions) ([]plan, error) {
	base := Options{Events: o.Events, Subjects: o.Subjects, Partitions: o.Partitions, Rounds: max(1, o.Rounds), Log: o.Log}
	var out []plan
	for _, s := range o.Sweeps {
		switch s {
		case SweepPurposes:
			for k := 1; k <= 5; k++ {
				p := base
				p.Purposes = k
				out = append(out, plan{sweep: s, x: float64(k), opt: p, passthrough: k == 1})
			}
		case SweepSubjects:
			for i, n := range []int{10_000, 100_000, 1_000_000, 10_000_000} {
				p := base
				p.Subjects = n
				out = append(out, plan{sweep: s, x: float64(n), opt: p, passthrough: i == 0})
			}
		case SweepSize:
			for _, n := range []int{200, 500, 1000, 2000, 4000} {
				p := base
				p.RecordBytes = n
				out = append(out, plan{sweep: s, x: float64(n), opt: p, passthrough: true})
			}
		case SweepReplicas:
			for n := 1; n <= 3; n++ {
				p := base
				p.Replicas, p.Partitions = n, 12
				out = append(out, plan{sweep: s, x: float64(n), opt: p, passthrough: true})
			}
		case SweepKanon:
			for _, n := range []int{1, 4} {
				p := base
				p.Partitions = n
				p.Modes = append([]Mode{Job}, KanonModes...)
				out = append(out, plan{sweep: s, x: float64(n), opt: p})
			}
		default:
			return nil, fmt.Errorf("bench throughput: unknown sweep %q (want %s)", s, strings.Join(Sweeps, ", "))
		}
	}
	for i := range out {
		if out[i].opt.Modes == nil {
			out[i].opt.Modes = []Mode{Job}
			if out[i].passthrough {
				out[i].opt.Modes = []Mode{PassthroughTx, Job}
			}
		}
	}
	return out, nil
}

// ParseSweeps reads a --sweep value: "all" or a comma-separated list of
// Sweeps.
func ParseSweeps(s string) ([]string, error) {
	if s == "all" {
		return append([]string(nil), Sweeps...), nil
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(Sweeps, f) {
			return nil, fmt.Errorf("unknown sweep %q (want all or some of %s)", f, strings.Join(Sweeps, ","))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// Sweep measures the points of the sweeps, one after the other.
func Sweep(ctx context.Context, o SweepOptions) (*Scaling, error) {
	if len(o.Sweeps) == 0 {
		o.Sweeps = Sweeps
	}
	if o.Events <= 0 {
		o.Events = 100000
	}
	if o.Subjects <= 0 {
		o.Subjects = 50000
	}
	if o.Partitions <= 0 {
		o.Partitions = 6
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	o.Rounds = max(1, o.Rounds)
	ps, err := plans(o)
	if err != nil {
		return nil, err
	}
	sc := &Scaling{Events: o.Events, Rounds: o.Rounds, Subjects: o.Subjects, Partitions: o.Partitions}
	defer func() { fillBaselines(sc.Points) }()
	for i, p := range ps {
		fmt.Fprintf(o.Log, "sweep %d/%d: %s = %g\n", i+1, len(ps), p.sweep, p.x)
		res, err := Run(ctx, p.opt)
		if err != nil {
			return sc, fmt.Errorf("sweep %s = %g: %w", p.sweep, p.x, err)
		}
		sc.Points = append(sc.Points, point(p, res))
	}
	return sc, nil
}

// point reads one point out of its measurement.
func point(p plan, r Result) Point {
	pt := Point{Sweep: p.sweep, X: p.x, Events: r.Events, Subjects: r.Subjects, Partitions: r.Partitions, EventBytes: r.EventBytes}
	if j, ok := r.Modes[Job]; ok {
		pt.JobEPS, pt.JobCPU, pt.JobRSSMB = j.EventsPerS, j.CPUMicrosEvent, j.PeakRSSMB
		pt.RecordsPerEvent = ratio(float64(j.RecordsOut), float64(r.Events))
		pt.RedisRoundTrips, pt.CacheHitRate = j.RedisRoundTrips, j.CacheHitRate
	}
	if t, ok := r.Modes[PassthroughTx]; ok {
		pt.PassthroughEPS, pt.PassthroughCPU, pt.PassthroughAt = t.EventsPerS, t.CPUMicrosEvent, p.x
	}
	if k, ok := r.Modes[KanonAggregates]; ok {
		pt.KanonAggRPS, pt.KanonAggCPU = k.EventsPerS, k.CPUMicrosEvent
	}
	if k, ok := r.Modes[KanonRecords]; ok {
		pt.KanonRecRPS, pt.KanonRecCPU = k.EventsPerS, k.CPUMicrosEvent
	}
	return pt
}

// fillBaselines gives the points of a sweep without their own passthrough
// the sweep's (from its point that measured one), and every point with a
// passthrough the ratio job / passthrough-tx.
func fillBaselines(pts []Point) {
	base := map[string]Point{}
	for _, p := range pts {
		if _, ok := base[p.Sweep]; !ok && p.PassthroughEPS > 0 {
			base[p.Sweep] = p
		}
	}
	for i := range pts {
		p := &pts[i]
		if b, ok := base[p.Sweep]; ok && p.PassthroughEPS == 0 && p.Sweep != SweepKanon {
			p.PassthroughEPS, p.PassthroughCPU, p.PassthroughAt = b.PassthroughEPS, b.PassthroughCPU, b.PassthroughAt
		}
		p.JobOverPassthrough = ratio(p.JobEPS, p.PassthroughEPS)
	}
}

// WriteTable prints the sweeps as a small text table.
func (s *Scaling) WriteTable(w io.Writer) {
	if s == nil || len(s.Points) == 0 {
		return
	}
	fmt.Fprintf(w, "%-9s %10s %7s %9s %10s %8s %8s %10s %6s %8s %7s\n",
		"sweep", "x", "bytes", "rec/event", "job ev/s", "job us", "job/pt", "pt ev/s", "rt/1k", "hit rate", "RSS MB")
	for _, p := range s.Points {
		if p.Sweep == SweepKanon {
			continue
		}
		fmt.Fprintf(w, "%-9s %10g %7.0f %9.2f %10.0f %8.1f %8.2f %10.0f %6.1f %8.3f %7.0f\n",
			p.Sweep, p.X, p.EventBytes, p.RecordsPerEvent, p.JobEPS, p.JobCPU, p.JobOverPassthrough, p.PassthroughEPS,
			p.RedisRoundTrips, p.CacheHitRate, p.JobRSSMB)
	}
	kanon := false
	for _, p := range s.Points {
		if p.Sweep != SweepKanon {
			continue
		}
		if !kanon {
			fmt.Fprintf(w, "%-10s %12s %14s %12s %14s %10s\n", "partitions", "agg rec/s", "agg us/record", "castle rec/s", "castle us/rec", "job ev/s")
			kanon = true
		}
		fmt.Fprintf(w, "%-10g %12.0f %14.1f %12.0f %14.1f %10.0f\n", p.X, p.KanonAggRPS, p.KanonAggCPU, p.KanonRecRPS, p.KanonRecCPU, p.JobEPS)
	}
}
