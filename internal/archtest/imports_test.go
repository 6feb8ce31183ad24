package archtest

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/privacy-pipeline/pipeline/"

// adapters are the client libraries a package links when it talks to
// Kafka, Redis or HTTP.
var adapters = []string{"github.com/twmb/franz-go/", "github.com/redis/go-redis/", "net/http"}

// rigs are the test rigs and in-process fakes.
var rigs = []string{module + "internal/testrig/",
	"github.com/twmb/franz-go/pkg/kfake", "github.com/twmb/franz-go/pkg/sr/srfake", "github.com/alicebob/miniredis/"}

// goList runs go list over the module's packages with a template.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(bytes.TrimSpace(out)))
}

// deps returns the packages pkg links (transitively), its own included.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	return goList(t, "-deps", pkg)
}

func matches(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p) && (strings.HasSuffix(p, "/") || strings.HasPrefix(path[len(p):], "/")) {
			return true
		}
	}
	return false
}

// TestProcessorsLinkNoClient: a processor turns records into records; the
// runner owns Kafka and wiring owns Redis (the privacy processor decides on
// a consent lookup interface, not on the Redis store). An exception fails
// the test once it is no longer needed.
func TestProcessorsLinkNoClient(t *testing.T) {
	exceptions := map[string]bool{}
	for _, pkg := range goList(t, "../../processors/...") {
		var bad []string
		for _, d := range deps(t, pkg) {
			if matches(d, adapters[:2]) {
				bad = append(bad, d)
			}
		}
		switch {
		case len(bad) > 0 && !exceptions[pkg]:
			t.Errorf("%s links %v", pkg, bad[:min(len(bad), 3)])
		case len(bad) == 0 && exceptions[pkg]:
			t.Errorf("%s no longer links a client: remove its exception", pkg)
		}
	}
}

// TestAlgorithmsLinkNoAdapter: codecs, field actions, policy, the consent
// domain, the audit record format and the k-anonymity algorithms are pure
// computation.
func TestAlgorithmsLinkNoAdapter(t *testing.T) {
	algorithms := []string{"kanon/...", "fields/...", "codec/..."}
	var pkgs []string
	for _, a := range algorithms {
		pkgs = append(pkgs, goList(t, "../"+a)...)
	}
	pkgs = append(pkgs, goList(t, "../consent")...) // the domain only, not its adapters
	pkgs = append(pkgs, goList(t, "../audit")...)   // the audit record format
	pkgs = append(pkgs, goList(t, "../../schemas")...)
	for _, pkg := range pkgs {
		for _, d := range deps(t, pkg) {
			if matches(d, adapters) {
				t.Errorf("%s links %s", pkg, d)
				break
			}
		}
	}
}

// TestOnlyCommandsImportTheRigs: the demo, chaos, benches, synthetic data
// and test helpers (and kfake, miniredis) are imported only by commands,
// by each other and by tests, never by a package that production code
// links.
func TestOnlyCommandsImportTheRigs(t *testing.T) {
	for _, line := range goList(t, "-f", "{{.ImportPath}}|{{join .Imports \",\"}}", "../../...") {
		pkg, imports, _ := strings.Cut(line, "|")
		if strings.HasPrefix(pkg, module+"cmd/") || matches(pkg, rigs) {
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			if matches(imp, rigs) {
				t.Errorf("%s imports the test rig %s", pkg, imp)
			}
		}
	}
}

// TestProductionBinaryLinksNoRig: the deploy image builds cmd/pipeline with
// -tags production; that binary (and privacyctl) links no test rig and no
// in-process fake, and no dev tool (chaos, benches, the offline evaluation).
func TestProductionBinaryLinksNoRig(t *testing.T) {
	dev := append(slices.Clone(rigs), module+"internal/kanon/eval")
	for _, cmd := range []string{"../../cmd/pipeline", "../../cmd/privacyctl"} {
		for _, d := range goList(t, "-deps", "-tags", "production", cmd) {
			if matches(d, dev) {
				t.Errorf("%s (-tags production) links %s", cmd, d)
			}
		}
	}
}

// TestNothingImportsCommands: commands sit at the top.
func TestNothingImportsCommands(t *testing.T) {
	for _, line := range goList(t, "-f", "{{.ImportPath}}|{{join .Imports \",\"}}", "../../...") {
		pkg, imports, _ := strings.Cut(line, "|")
		if slices.ContainsFunc(strings.Split(imports, ","), func(s string) bool { return strings.HasPrefix(s, module+"cmd/") }) {
			t.Errorf("%s imports a command", pkg)
		}
	}
}

// TestRecordOfProcessingReadsDeclarationsOnly: internal/ropa derives the
// record from the declarations (schemas, policy, purposes, kanon spec,
// topology) and nothing else: it imports no other package of the module,
// and links no Redis or HTTP client, no connection owner and no key
// package, so the record can hold no secret and reads nothing live.
func TestRecordOfProcessingReadsDeclarationsOnly(t *testing.T) {
	allowed := []string{module + "schemas", module + "internal/fields/policy", module + "internal/fields/purpose",
		module + "internal/kanon/kanonspec", module + "topology"}
	for _, line := range goList(t, "-f", "{{.ImportPath}}|{{join .Imports \",\"}}", "../ropa") {
		pkg, imports, _ := strings.Cut(line, "|")
		for _, imp := range strings.Split(imports, ",") {
			if strings.HasPrefix(imp, module) && !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
	forbidden := []string{"github.com/redis/go-redis/", "net/http", module + "internal/stream/", module + "internal/app/",
		module + "internal/fields/pseudonym", module + "internal/fields/subjectkey", module + "internal/keys/", module + "internal/tlsfiles"}
	for _, d := range deps(t, "../ropa") {
		if matches(d, forbidden) {
			t.Errorf("internal/ropa links %s", d)
		}
	}
}
