// Package deploy holds the deployment files (Dockerfile, Kubernetes
// manifests, Prometheus rules, Grafana dashboard). There is no Docker
// engine on the build machines, so this test validates them instead: they
// parse, name only configuration variables the binary knows, query only
// metrics it exports, and probe endpoints it serves.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/requests/fulfil"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/privacy-pipeline/pipeline/internal/app/config"
	"github.com/privacy-pipeline/pipeline/internal/fields/purpose"
	"github.com/privacy-pipeline/pipeline/internal/stream/runner"
	"github.com/privacy-pipeline/pipeline/processors/kit/kanonmetrics"
	"github.com/privacy-pipeline/pipeline/processors/privacy"
	"github.com/privacy-pipeline/pipeline/topology"
)

func knownEnv() map[string]bool {
	out := map[string]bool{}
	for _, v := range config.EnvVars() {
		out[v] = true
	}
	return out
}

func knownMetrics(t *testing.T) map[string]bool {
	reg := prometheus.NewRegistry()
	rm := runner.NewMetrics(reg)
	rm.Lag.WithLabelValues("t", "0")
	m := privacy.NewMetrics(reg)
	// Touch every vector so it is gathered.
	m.EventsIn.Add(0)
	k := kanonmetrics.New(reg)
	k.Events.WithLabelValues("o", "accepted")
	k.Rows.WithLabelValues("o", "released")
	k.SuppressedEvents.WithLabelValues("o")
	k.MinSubjects.WithLabelValues("o")
	k.Records.WithLabelValues("o", "released")
	k.InfoLoss.WithLabelValues("o")
	k.Delay.WithLabelValues("o")
	k.EpsilonSpent.WithLabelValues("o")
	k.Restores.WithLabelValues("p")
	k.StateUnreadable.WithLabelValues("p")
	k.StateResets.WithLabelValues("p")
	k.WatermarkCapped.WithLabelValues("o")
	k.WindowsRefused.WithLabelValues("o")
	k.MergePartials.WithLabelValues("cells")
	k.MergePending.WithLabelValues("o")
	f := fulfil.NewMetrics(reg)
	f.Failures.WithLabelValues("erasure")
	f.Done.WithLabelValues("erasure", "gdpr")
	f.Seconds.WithLabelValues("erasure")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			out[mf.GetName()+suffix] = true
		}
	}
	return out
}

var metricRef = regexp.MustCompile(`\bpipeline_[a-z_]+`)

func checkMetricRefs(t *testing.T, where, text string, known map[string]bool) {
	t.Helper()
	refs := metricRef.FindAllString(text, -1)
	if len(refs) == 0 {
		t.Errorf("%s references no pipeline metric", where)
	}
	for _, r := range refs {
		if !known[r] {
			t.Errorf("%s references %s, which the pipeline does not export", where, r)
		}
	}
}

func readYAMLDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

var envRef = regexp.MustCompile(`\bPIPELINE_[A-Z_]+`)

// scriptEnv are variables of scripts/services, not of the binary.
var scriptEnv = map[string]bool{"PIPELINE_CACHE_DIR": true, "PIPELINE_TEST_KAFKA_PORT": true,
	"PIPELINE_TEST_KAFKA_CONTROLLER_PORT": true, "PIPELINE_TEST_REDIS_PORT": true,
	"PIPELINE_TEST_KAFKA_SASL_PORT": true, "PIPELINE_TEST_KAFKA_MTLS_PORT": true, "PIPELINE_TEST_REDIS_TLS_PORT": true,
	"PIPELINE_TEST_KAFKA_VERSION": true, "PIPELINE_KAFKA_HEAP": true, "PIPELINE_KAFKA_START_TIMEOUT": true,
	"PIPELINE_TEST_REGISTRY_PORT": true, "PIPELINE_SCHEMA_REGISTRY_URL": true, "PIPELINE_RUN_DIR": true,
	"PIPELINE_CONSENT_API_URL": true, // privacyctl's
	"PIPELINE_ADULT_DIR":       true, // scripts/test's
	"PIPELINE_PYTHON":          true} // the fastavro check's (scripts/pyenv)

func checkEnvRefs(t *testing.T, where, text string) {
	t.Helper()
	known := knownEnv()
	for _, v := range envRef.FindAllString(text, -1) {
		if !known[v] && !(where == "README.md" && scriptEnv[v]) {
			t.Errorf("%s sets %s, which the pipeline does not read", where, v)
		}
	}
}

func TestDockerCompose(t *testing.T) {
	docs := readYAMLDocs(t, "../docker-compose.yml")
	if len(docs) != 1 {
		t.Fatalf("want one document, got %d", len(docs))
	}
	svcs, _ := docs[0]["services"].(map[string]any)
	for _, name := range []string{"kafka", "redis", "keygen", "topology", "privacy", "consent-sync", "consent-api", "prometheus", "grafana"} {
		if _, ok := svcs[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	kafka, _ := svcs["kafka"].(map[string]any)
	if img, _ := kafka["image"].(string); !strings.HasPrefix(img, "apache/kafka:4") {
		t.Errorf("kafka image %q: SPEC 5 wants the official apache/kafka image", img)
	}
	priv, _ := svcs["privacy"].(map[string]any)
	if cmd := strings.Join(toStrings(priv["command"]), " "); cmd != "run privacy" {
		t.Errorf("privacy command %q", cmd)
	}
	env, _ := priv["environment"].(map[string]any)
	if env["PIPELINE_KAFKA_BROKERS"] != "kafka:9092" || env["PIPELINE_REDIS_ADDR"] != "redis:6379" {
		t.Errorf("privacy does not point at the compose services: %v", env)
	}
	b, _ := os.ReadFile("../docker-compose.yml")
	checkEnvRefs(t, "docker-compose.yml", string(b))
	if df, _ := os.ReadFile("Dockerfile"); !regexp.MustCompile(`(?m)^RUN .*go build -tags production .* \./cmd/pipeline$`).Match(df) || !bytes.Contains(df, []byte("./cmd/privacyctl")) {
		t.Error("deploy/Dockerfile does not build ./cmd/pipeline with -tags production (the image must not ship the demo's fakes) and ./cmd/privacyctl")
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func TestKubernetesManifests(t *testing.T) {
	kinds := map[string]bool{}
	for _, f := range []string{"k8s/privacy.yaml", "k8s/topology-job.yaml", "k8s/consent.yaml", "k8s/kanon.yaml"} {
		for _, d := range readYAMLDocs(t, f) {
			kind, _ := d["kind"].(string)
			kinds[kind] = true
			if kind != "StatefulSet" {
				continue
			}
			b, _ := yaml.Marshal(d)
			s := string(b)
			for _, want := range []string{"path: /readyz", "path: /healthz", "terminationGracePeriodSeconds", "PIPELINE_TRANSACTIONAL_ID"} {
				if !strings.Contains(s, want) {
					t.Errorf("%s: StatefulSet lacks %s", f, want)
				}
			}
		}
		b, _ := os.ReadFile(f)
		checkEnvRefs(t, f, string(b))
	}
	for _, k := range []string{"ConfigMap", "StatefulSet", "Service", "PodDisruptionBudget", "Job"} {
		if !kinds[k] {
			t.Errorf("no %s in deploy/k8s", k)
		}
	}
}

func TestAlertRulesUseExportedMetrics(t *testing.T) {
	docs := readYAMLDocs(t, "prometheus/alerts.yml")
	groups, _ := docs[0]["groups"].([]any)
	known := knownMetrics(t)
	n := 0
	for _, g := range groups {
		rules, _ := g.(map[string]any)["rules"].([]any)
		for _, r := range rules {
			rm := r.(map[string]any)
			n++
			checkMetricRefs(t, "alert "+rm["alert"].(string), rm["expr"].(string), known)
		}
	}
	if n < 4 {
		t.Fatalf("only %d alert rules", n)
	}
}

func TestDashboardUsesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana/dashboards/privacy-pipeline.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	known := knownMetrics(t)
	var titles []string
	for _, p := range d.Panels {
		titles = append(titles, p.Title)
		for _, tg := range p.Targets {
			checkMetricRefs(t, "panel "+p.Title, tg.Expr, known)
		}
	}
	sort.Strings(titles)
	if len(titles) < 6 {
		t.Fatalf("dashboard has %d panels", len(titles))
	}
}

// TestReadmeDocumentsEveryEnvVar keeps the README's configuration table
// complete.
func TestReadmeDocumentsEveryEnvVar(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for v := range knownEnv() {
		if !bytes.Contains(b, []byte("`"+v+"`")) {
			t.Errorf("README does not document %s", v)
		}
	}
	checkEnvRefs(t, "README.md", string(b))
}

// TestAutoscalingFollowsTheTopology: each ScaledObject targets a declared
// StatefulSet, reads the lag of that processor's own group and input topic
// (the topology's names), and never scales past the partitions the
// topology Job creates (replicas beyond them would only idle).
func TestAutoscalingFollowsTheTopology(t *testing.T) {
	names := topology.DefaultNames()
	want := map[string][2]string{
		"privacy":       {names.Groups.Privacy, names.Raw},
		"kanon":         {names.Groups.KanonAggregates, names.Clean(purpose.Analytics)},
		"kanon-records": {names.Groups.KanonRecords, names.Clean(purpose.AITraining)},
	}
	sets := map[string]bool{}
	files, _ := filepath.Glob("k8s/*.yaml")
	partitions := 0
	for _, f := range files {
		for _, d := range readYAMLDocs(t, f) {
			meta, _ := d["metadata"].(map[string]any)
			switch d["kind"] {
			case "StatefulSet":
				sets[fmt.Sprint(meta["name"])] = true
			case "Job":
				args := fmt.Sprint(d)
				if m := regexp.MustCompile(`--partitions (\d+)`).FindStringSubmatch(args); m != nil {
					partitions, _ = strconv.Atoi(m[1])
				}
			}
		}
	}
	seen := 0
	for _, d := range readYAMLDocs(t, "k8s/autoscaling.yaml") {
		if d["kind"] != "ScaledObject" {
			continue
		}
		seen++
		spec := d["spec"].(map[string]any)
		target := spec["scaleTargetRef"].(map[string]any)
		name := fmt.Sprint(target["name"])
		if target["kind"] != "StatefulSet" || !sets[name] {
			t.Errorf("ScaledObject targets %v %s, not a declared StatefulSet", target["kind"], name)
		}
		if max, _ := spec["maxReplicaCount"].(int); max < 1 || max > partitions {
			t.Errorf("%s scales to %v replicas; the topology creates %d partitions", name, spec["maxReplicaCount"], partitions)
		}
		trig := spec["triggers"].([]any)[0].(map[string]any)
		md := trig["metadata"].(map[string]any)
		if w := want[name]; trig["type"] != "kafka" || md["consumerGroup"] != w[0] || md["topic"] != w[1] || md["allowIdleConsumers"] != "false" {
			t.Errorf("%s: trigger %v, want kafka on group %s, topic %s, no idle consumers", name, trig, w[0], w[1])
		}
	}
	if seen != len(want) || partitions == 0 {
		t.Fatalf("%d ScaledObjects (want %d), topology partitions %d", seen, len(want), partitions)
	}
}
