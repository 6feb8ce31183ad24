package integration

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
)

// TestConsentAPIAndCLIOnRealServices runs the consent API on the real broker
// and Redis: bad input over HTTP and through privacyctl writes nothing;
// good input reaches the consent topic.
func TestConsentAPIAndCLIOnRealServices(t *testing.T) {
	r := newRig(t)
	srv := r.startAPI()

	for _, bad := range []struct{ path, body string }{
		{"/v1/subjects/c1/consents/telepathy", `{"state":"granted","source":"web_form","policy_version":"v"}`},
		{"/v1/subjects/c1/consents/analytics", `{"state":"granted","jurisdiction":"atlantis","source":"web_form","policy_version":"v"}`},
		{"/v1/subjects/c1/consents/analytics", `not json`},
	} {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+bad.path, strings.NewReader(bad.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("PUT %s %s: %s", bad.path, bad.body, resp.Status)
		}
	}

	bin := filepath.Join(t.TempDir(), "privacyctl")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(repoRoot(t), "cmd", "privacyctl")).CombinedOutput(); err != nil {
		t.Fatalf("build privacyctl: %v\n%s", err, out)
	}
	ctl := func(args ...string) (int, string) {
		cmd := exec.Command(bin, append([]string{"--api", srv.URL}, args...)...)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := ctl("consent", "set", "c1", "telepathy", "granted"); code != 2 || !strings.Contains(out, "purpose") {
		t.Errorf("unknown purpose: exit %d: %s", code, out)
	}
	if code, out := ctl("consent", "set", "", "analytics", "granted"); code != 2 {
		t.Errorf("empty subject: exit %d: %s", code, out)
	}
	if code, out := ctl("consent", "set", "c1", "analytics", "granted", "--jurisdiction", "gdpr"); code != 0 {
		t.Fatalf("set: exit %d: %s", code, out)
	}
	csv := filepath.Join(t.TempDir(), "consents.csv")
	os.WriteFile(csv, []byte("subject_id,purpose,state,jurisdiction,source,policy_version,timestamp\n"+
		"c2,marketing,denied,pdpa,import,v1,\nc3,nope,granted,pdpa,import,v1,\n"), 0o600)
	if code, out := ctl("consent", "import", csv); code != 3 || !strings.Contains(out, "3") {
		t.Errorf("import with a bad line: exit %d: %s", code, out)
	}
	recs := r.read(r.consentTopic())
	var keys []string
	for _, rec := range recs {
		c, err := consentlog.Decode(rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		if string(rec.Key) != string(c.Key()) {
			t.Fatalf("record keyed %q holds a change keyed %q", rec.Key, c.Key())
		}
		keys = append(keys, string(rec.Key))
	}
	slices.Sort(keys)
	// The two valid changes, each with the subject-level companion that
	// keeps its jurisdiction through compaction.
	if want := []string{"c1/analytics", "c1/jurisdiction", "c2/jurisdiction", "c2/marketing"}; !slices.Equal(keys, want) {
		t.Fatalf("consent topic holds %v; want %v", keys, want)
	}
	_ = context.Background
}
