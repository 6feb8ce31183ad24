package throughput

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/privacy-pipeline/pipeline/examples/producer"
	"github.com/privacy-pipeline/pipeline/internal/consent"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/testrig/synth"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
)

// TestRoundTripsCountsCommandsAndPipelines: one round trip per command,
// one per pipeline whatever it carries; the next hook is always called.
func TestRoundTripsCountsCommandsAndPipelines(t *testing.T) {
	h := &roundTrips{}
	ctx := context.Background()
	calls := 0
	cmd := h.ProcessHook(func(context.Context, redis.Cmder) error { calls++; return nil })
	pipe := h.ProcessPipelineHook(func(_ context.Context, cmds []redis.Cmder) error { calls += len(cmds); return nil })
	cmd(ctx, redis.NewStringCmd(ctx, "get", "a"))
	cmd(ctx, redis.NewStringCmd(ctx, "get", "b"))
	var cmds []redis.Cmder
	for range 10 {
		cmds = append(cmds, redis.NewIntCmd(ctx, "incr", "c"))
	}
	pipe(ctx, cmds)
	if n := h.load(); n != 3 || calls != 12 {
		t.Fatalf("%d round trips (want 3), %d commands passed on (want 12)", n, calls)
	}
	if n := h.reset(); n != 3 || h.load() != 0 {
		t.Fatalf("reset returned %d, then %d", n, h.load())
	}
}

// TestRoundTripsOnAClient: on a go-redis client, a 100-command pipeline
// and an MGET of 100 keys are a round trip each (plus, on a new
// connection, its handshake, which is counted too: it is round trips).
func TestRoundTripsOnAClient(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	h := &roundTrips{}
	rdb.AddHook(h)
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	h.reset()
	var keys []string
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range 100 {
			keys = append(keys, strconv.Itoa(i))
			p.Set(ctx, keys[i], "v", 0)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.MGet(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	if n := h.load(); n < 2 || n > 4 {
		t.Fatalf("%d round trips for a pipeline and an MGET", n)
	}
}

// TestCacheHitRate reads the consent cache counters of the job's
// registries, summed over replicas.
func TestCacheHitRate(t *testing.T) {
	var regs []*prometheus.Registry
	for _, hm := range [][2]float64{{30, 10}, {10, 50}} {
		reg := prometheus.NewRegistry()
		m := privacy.NewMetrics(reg)
		m.ConsentCacheHits.Add(hm[0])
		m.ConsentCacheMisses.Add(hm[1])
		regs = append(regs, reg)
	}
	r, err := cacheHitRate(regs)
	if err != nil {
		t.Fatal(err)
	}
	if r != 0.4 {
		t.Fatalf("hit rate %v, want 40/100", r)
	}
	if r, _ := cacheHitRate(nil); r != 0 {
		t.Fatalf("no lookups: %v", r)
	}
}

// TestCommitsCountPerTopicAndChain: the commit hook counts outputs per
// topic and calls the hook it wraps.
func TestCommitsCountPerTopicAndChain(t *testing.T) {
	var c commits
	called := 0
	f := c.hook(func([]processors.Output, time.Time) { called++ })
	f([]processors.Output{{Topic: "a"}, {Topic: "b"}, {Topic: "a"}}, time.Now())
	f([]processors.Output{{Topic: "a"}}, time.Now())
	if c.topic("a") != 3 || c.topic("b") != 1 || c.total("a", "b", "z") != 4 || called != 2 {
		t.Fatalf("a %d, b %d, total %d, called %d", c.topic("a"), c.topic("b"), c.total("a", "b", "z"), called)
	}
}

// TestPlansLayOutTheSweeps: the points, their knobs and which measure the
// passthrough.
func TestPlansLayOutTheSweeps(t *testing.T) {
	ps, err := plans(SweepOptions{Sweeps: Sweeps, Events: 1000, Subjects: 500, Partitions: 6})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	pass := map[string]int{}
	for _, p := range ps {
		count[p.sweep]++
		if p.opt.Rounds != 1 || p.opt.Events != 1000 { // rounds default to 1
			t.Fatalf("%s %g: %+v", p.sweep, p.x, p.opt)
		}
		if p.passthrough {
			pass[p.sweep]++
			if p.opt.Modes[0] != PassthroughTx {
				t.Fatalf("%s %g: modes %v", p.sweep, p.x, p.opt.Modes)
			}
		}
		switch p.sweep {
		case SweepPurposes:
			if p.opt.Purposes != int(p.x) {
				t.Fatalf("purposes %d at x %g", p.opt.Purposes, p.x)
			}
		case SweepSubjects:
			if p.opt.Subjects != int(p.x) {
				t.Fatalf("subjects %d at x %g", p.opt.Subjects, p.x)
			}
		case SweepSize:
			if p.opt.RecordBytes != int(p.x) || p.opt.Subjects != 500 {
				t.Fatalf("size %+v", p.opt)
			}
		case SweepReplicas:
			if p.opt.Replicas != int(p.x) || p.opt.Partitions != 12 {
				t.Fatalf("replicas %+v", p.opt)
			}
		case SweepKanon:
			if p.opt.Partitions != int(p.x) || len(p.opt.Modes) != 3 || p.opt.Modes[0] != Job {
				t.Fatalf("kanon %+v", p.opt)
			}
		}
	}
	want := map[string]int{SweepPurposes: 5, SweepSubjects: 4, SweepSize: 5, SweepReplicas: 3, SweepKanon: 2}
	wantPass := map[string]int{SweepPurposes: 1, SweepSubjects: 1, SweepSize: 5, SweepReplicas: 3}
	for s, n := range want {
		if count[s] != n || pass[s] != wantPass[s] {
			t.Fatalf("%s: %d points (%d with the passthrough), want %d (%d)", s, count[s], pass[s], n, wantPass[s])
		}
	}
	if _, err := plans(SweepOptions{Sweeps: []string{"colour"}}); err == nil {
		t.Fatal("an unknown sweep was accepted")
	}
}

// TestParseSweeps: all, a list, duplicates, an unknown name.
func TestParseSweeps(t *testing.T) {
	if s, err := ParseSweeps("all"); err != nil || len(s) != len(Sweeps) {
		t.Fatalf("all: %v %v", s, err)
	}
	if s, err := ParseSweeps("size, purposes,size"); err != nil || strings.Join(s, ",") != "size,purposes" {
		t.Fatalf("list: %v %v", s, err)
	}
	if _, err := ParseSweeps("size,nope"); err == nil {
		t.Fatal("unknown accepted")
	}
}

// TestFillBaselines: a sweep's one passthrough is the baseline of its
// other points; points with their own keep theirs; the ratio is job /
// passthrough; the kanon points get none.
func TestFillBaselines(t *testing.T) {
	pts := []Point{
		{Sweep: SweepPurposes, X: 1, JobEPS: 80, PassthroughEPS: 40, PassthroughCPU: 9, PassthroughAt: 1},
		{Sweep: SweepPurposes, X: 2, JobEPS: 20},
		{Sweep: SweepSize, X: 200, JobEPS: 30, PassthroughEPS: 60, PassthroughAt: 200},
		{Sweep: SweepSize, X: 500, JobEPS: 30, PassthroughEPS: 15, PassthroughAt: 500},
		{Sweep: SweepKanon, X: 1, JobEPS: 30},
	}
	fillBaselines(pts)
	if p := pts[1]; p.PassthroughEPS != 40 || p.PassthroughCPU != 9 || p.PassthroughAt != 1 || p.JobOverPassthrough != 0.5 {
		t.Fatalf("purposes 2: %+v", p)
	}
	if pts[0].JobOverPassthrough != 2 || pts[2].JobOverPassthrough != 0.5 || pts[3].JobOverPassthrough != 2 || pts[3].PassthroughAt != 500 {
		t.Fatalf("ratios %+v", pts)
	}
	if pts[4].PassthroughEPS != 0 || pts[4].JobOverPassthrough != 0 {
		t.Fatalf("kanon %+v", pts[4])
	}
}

// TestPointReadsTheResult: the point's figures come from the modes; the
// records per event from the job's records out.
func TestPointReadsTheResult(t *testing.T) {
	r := Result{Events: 1000, Subjects: 10, Partitions: 4, EventBytes: 500, Modes: map[Mode]Figures{
		Job:             {EventsPerS: 100, CPUMicrosEvent: 12, RecordsOut: 2600, RedisRoundTrips: 0.5, CacheHitRate: 0.1},
		PassthroughTx:   {EventsPerS: 200, CPUMicrosEvent: 8},
		KanonAggregates: {EventsPerS: 900, CPUMicrosEvent: 2},
		KanonRecords:    {EventsPerS: 300, CPUMicrosEvent: 20},
	}}
	p := point(plan{sweep: SweepKanon, x: 4}, r)
	if p.RecordsPerEvent != 2.6 || p.JobEPS != 100 || p.PassthroughEPS != 200 || p.PassthroughAt != 4 || p.KanonAggRPS != 900 || p.KanonRecCPU != 20 || p.CacheHitRate != 0.1 {
		t.Fatalf("%+v", p)
	}
}

// TestSizeEvent: the encoded event reaches the size aimed at, above and
// below its natural size.
func TestSizeEvent(t *testing.T) {
	enc, err := producer.NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	gen := synth.New(1, 100, time.Now())
	for _, target := range []int{200, 500, 1000, 2000, 4000} {
		for i := range 20 {
			ev := gen.Event(i)
			if err := sizeEvent(enc, &ev, target); err != nil {
				t.Fatal(err)
			}
			b, err := enc.AppendEncoded(nil, &ev)
			if err != nil {
				t.Fatal(err)
			}
			if d := len(b) - target; d < -2 || d > 0 {
				t.Fatalf("event %d aimed at %d bytes: %d", i, target, len(b))
			}
		}
	}
}

// TestConsentOfGrantsTheFirstK: --purposes k grants the first k purposes
// and denies the rest.
func TestConsentOfGrantsTheFirstK(t *testing.T) {
	b := &bench{opt: Options{Purposes: 2}, start: time.Now()}
	r, ok := b.consentOf(7)
	if !ok {
		t.Fatal("no record")
	}
	for k, p := range purpose.All {
		want := consent.Denied
		if k < 2 {
			want = consent.Granted
		}
		if r.Purposes[p].State != want {
			t.Fatalf("%s: %v, want %v", p, r.Purposes[p].State, want)
		}
	}
}

// TestPlotFromJSON: a fixed result's JSON, read back as 'bench plot' reads
// it (the last JSON line of the output), makes a non-empty PNG; a result
// without sweeps is refused.
func TestPlotFromJSON(t *testing.T) {
	sc := &Scaling{Events: 20000, Subjects: 50000, Partitions: 6}
	for k := 1; k <= 5; k++ {
		sc.Points = append(sc.Points, Point{Sweep: SweepPurposes, X: float64(k), JobEPS: 90000 - 10000*float64(k), PassthroughEPS: 50000 * float64(min(k, 1))})
	}
	for i, n := range []float64{1e4, 1e5, 1e6, 1e7} {
		sc.Points = append(sc.Points, Point{Sweep: SweepSubjects, X: n, JobEPS: 50000 - 5000*float64(i), RedisRoundTrips: 0.5 + float64(i)})
	}
	for _, n := range []float64{200, 500, 1000, 2000, 4000} {
		sc.Points = append(sc.Points, Point{Sweep: SweepSize, X: n, JobEPS: 4e7 / (n + 500), PassthroughEPS: 6e7 / (n + 500)})
	}
	for n := 1.0; n <= 3; n++ {
		sc.Points = append(sc.Points, Point{Sweep: SweepReplicas, X: n, JobEPS: 30000 * n, PassthroughEPS: 35000 * n})
	}
	for _, n := range []float64{1, 4} {
		sc.Points = append(sc.Points, Point{Sweep: SweepKanon, X: n, KanonAggRPS: 90000 * n, KanonRecRPS: 40000 * n})
	}
	fillBaselines(sc.Points)
	js, err := json.Marshal(Result{Events: 1000, Scaling: sc})
	if err != nil {
		t.Fatal(err)
	}
	out := "passthrough_tx 1 events/s\n" + string(js) + "\n"
	res, err := ReadResult([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Scaling.Points) != len(sc.Points) {
		t.Fatalf("%d points read back", len(res.Scaling.Points))
	}
	var buf bytes.Buffer
	if err := Plot(res, &buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 400 {
		t.Fatalf("image %v", b)
	}
	// Not blank: some pixel is neither white nor transparent.
	inked := false
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y && !inked; y += 3 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 3 {
			if r, g, b, a := img.At(x, y).RGBA(); a > 0 && (r < 0xf000 || g < 0xf000 || b < 0xf000) {
				inked = true
				break
			}
		}
	}
	if !inked {
		t.Fatal("a blank image")
	}
	// A partial sweep (some panels empty) still plots.
	res.Scaling.Points = res.Scaling.Points[:3]
	if err := Plot(res, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if err := Plot(Result{}, &bytes.Buffer{}); err == nil {
		t.Fatal("a result without sweeps was plotted")
	}
}

// TestWriteTable: a row per point, the kanon points in their own table.
func TestWriteTable(t *testing.T) {
	sc := &Scaling{Points: []Point{{Sweep: SweepPurposes, X: 1, JobEPS: 1000}, {Sweep: SweepKanon, X: 4, KanonAggRPS: 5}}}
	var b strings.Builder
	sc.WriteTable(&b)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "purposes") || !strings.HasPrefix(lines[3], "4 ") {
		t.Fatalf("%q", b.String())
	}
}
