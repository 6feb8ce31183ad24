package kanonmerge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/codec/avrosingle"
	"github.com/privacy-pipeline/pipeline/internal/kanon/kanonspec"
	"github.com/privacy-pipeline/pipeline/processors"
	"github.com/privacy-pipeline/pipeline/processors/kit/subject"
)

// measureEvents is a 12-partition stream: people with a fixed, skewed
// profile (age band, country, gender), events of four types over 20 one-minute
// windows, each person on the partition of its pseudonym's hash.
func measureEvents(seed uint64, n, people int, partitions int32) []ev {
	rng := rand.New(rand.NewPCG(seed, 11))
	ages, countries := []string{"18-24", "25-34", "35-44", "65+"}, []string{"VN", "DE", "US", "FR", "SG"}
	genders, etypes := []string{"female", "male", "non_binary"}, []string{"page_view", "search", "purchase", "login"}
	span := 20 * time.Minute
	evs := make([]ev, n)
	// Profiles are skewed: a few are common, most are rare, so cells
	// range from a handful of people to hundreds.
	profile := make([]int, people)
	for s := range profile {
		u := rng.Float64()
		profile[s] = int(60 * u * u * u)
	}
	for i := range evs {
		s := rng.IntN(people)
		ps := fmt.Sprintf("person-%05d", s)
		p := profile[s]
		evs[i] = ev{pseudonym: ps, keyID: "analytics-2026-07", partition: int32(subject.Hash([]byte(ps)) % uint64(partitions)),
			at:  t0.Add(time.Duration(int64(span) * int64(i) / int64(n))),
			age: ages[p%len(ages)], country: countries[(p/4)%len(countries)], gender: genders[(p/20)%3], etype: etypes[rng.IntN(len(etypes))]}
	}
	return evs
}

// rowKey strips a per-partition row key of its "#p<n>" suffix.
func rowKey(k []byte) string {
	s := string(k)
	if i := strings.LastIndex(s, "#p"); i >= 0 {
		s = s[:i]
	}
	return s
}

// figures decodes rows to key -> "events/subjects".
func figures(t testing.TB, rows []processors.Output) map[string]string {
	t.Helper()
	spec, _ := kanonspec.Default()
	codec, err := avrosingle.NewCodec(string(spec.Aggregates[0].AggregateSchemaJSON()))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, o := range rows {
		n, _, err := codec.NativeFromSingle(o.Value)
		if err != nil {
			t.Fatal(err)
		}
		m := n.(map[string]any)
		k := rowKey(o.Key)
		if _, dup := out[k]; dup && !strings.Contains(string(o.Key), "#p") {
			t.Fatalf("merged row %s twice", k)
		}
		out[k] = fmt.Sprintf("%d/%d", m["events"], m["subjects"])
	}
	return out
}

// singleShard runs the one-stage processor over every event on one
// partition (the whole-file offline figure).
func singleShard(t testing.TB, k int, evs []ev) []processors.Output {
	t.Helper()
	one := slices.Clone(evs)
	for i := range one {
		one[i].partition = 0
	}
	return perPartition(t, k, one)
}

// TestSuppressedShareOnTwelvePartitions measures issue 11 defect 8: of
// the level-0 cells (window and dimension values) with at least k
// distinct people in the whole stream, the share that gets no level-0
// row, per partition (before) and merged (after), against a single-shard
// run over all events (the whole-file offline figure). The merged release
// set must equal the whole-file one (DP off): the same rows, roll-ups and
// margins with the same events and subjects. Run it with
//
//	go test -run TestSuppressedShareOnTwelvePartitions -v ./processors/kanonmerge/
func TestSuppressedShareOnTwelvePartitions(t *testing.T) {
	const k, partitions = 11, 12
	for _, tc := range []struct {
		events, people int
	}{{40000, 3000}} {
		evs := measureEvents(21, tc.events, tc.people, partitions)
		// Ground truth: distinct people per level-0 cell of each window.
		people := map[string]map[string]bool{}
		for _, e := range evs {
			start := e.at.UnixMilli() / 60000 * 60000
			c := fmt.Sprintf("%d/0/%s/%s/%s/%s", start, e.age, e.country, e.gender, e.etype)
			if people[c] == nil {
				people[c] = map[string]bool{}
			}
			people[c][e.pseudonym] = true
		}
		var atK []string
		for c, ps := range people {
			if len(ps) >= k {
				atK = append(atK, c)
			}
		}
		if len(atK) == 0 {
			t.Fatal("no cell reaches k: the stream measures nothing")
		}
		before := figures(t, perPartition(t, k, evs))
		merged, _ := offline(t, k, partitions, evs)
		after := figures(t, merged)
		whole := figures(t, singleShard(t, k, evs))
		share := func(rows map[string]string) (int, float64) {
			n := 0
			for _, c := range atK {
				if _, ok := rows[c]; !ok {
					n++
				}
			}
			return n, float64(n) / float64(len(atK))
		}
		nb, sb := share(before)
		na, sa := share(after)
		nw, sw := share(whole)
		t.Logf("%d events, %d people, %d partitions, k=%d: %d level-0 cells with >= k people; suppressed per partition %d (%.1f%%), merged %d (%.1f%%), whole-file offline %d (%.1f%%)",
			tc.events, tc.people, partitions, k, len(atK), nb, 100*sb, na, 100*sa, nw, 100*sw)
		if na != nw || na != 0 {
			t.Errorf("merged suppresses %d cells of >= k people, the whole-file run %d", na, nw)
		}
		if nb == 0 {
			t.Error("the per-partition baseline suppresses nothing: the stream does not exercise the defect")
		}
		if len(after) != len(whole) {
			t.Errorf("merged release set has %d rows, the whole-file run %d", len(after), len(whole))
		}
		for key, v := range whole {
			if after[key] != v {
				t.Errorf("row %s: merged %q, whole-file %q", key, after[key], v)
				break
			}
		}
	}
}

// FuzzProcess feeds arbitrary partials records to the merge stage: it never
// fails and never stalls on them.
func FuzzProcess(f *testing.F) {
	_, partials := offline(f, 3, 2, oneCell([]int{2, 2}, "k"))
	for _, o := range partials {
		f.Add(o.Value)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, merge := stages(t, 3, 2, nil)
		merge.UseStore(emptyStore{})
		w := merge.NewWorker()
		in := []processors.Record{{Offset: 0, Value: b}}
		for i, o := range partials {
			in = append(in, processors.Record{Offset: int64(i + 1), Value: o.Value})
		}
		var out processors.Batch
		if err := w.Process(context.Background(), in, &out); err != nil {
			t.Fatal(err)
		}
	})
}
