package consentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/privacy-pipeline/pipeline/internal/audit"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentlog"
	"github.com/privacy-pipeline/pipeline/internal/consent/consentredis"
	"github.com/privacy-pipeline/pipeline/internal/erasure"
	"github.com/privacy-pipeline/pipeline/internal/httpauth"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaconn"
	"github.com/privacy-pipeline/pipeline/internal/stream/kafkaio"
	"github.com/privacy-pipeline/pipeline/internal/testrig/pipelinetest"
)

// TestEveryChangeIsAudited (attacks: a change nobody can attribute, and an
// audit trail that lists who the subjects are): through a token-guarded
// API, a grant (with "Sec-GPC: 1"), a withdrawal, a profile and an import
// each write their audit records with the change, naming the
// authenticated principal, the change, purpose, source, versions and
// receipt, and the subject only by its erasure-ledger mark; the canary
// subject ids appear in no audit record. Without the ledger key the
// records name no subject at all.
func TestEveryChangeIsAudited(t *testing.T) {
	const consentT, auditT = "privacy.consent", "privacy.audit"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, consentT), kfake.SeedTopics(1, auditT))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := kafkaconn.Config{Brokers: c.ListenAddrs()}
	cl, _ := conn.NewClient(kgo.RecordPartitioner(consentlog.Partitioner()))
	defer cl.Close()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	token, entry, err := httpauth.NewToken("privacy-desk", []httpauth.Scope{httpauth.ScopeAdmin}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(t.TempDir(), "principals.json")
	b, _ := json.Marshal(httpauth.File{Tokens: []httpauth.TokenEntry{entry}})
	if err := os.WriteFile(pf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	guard, err := httpauth.New(httpauth.Config{Mode: httpauth.Mode{Token: true}, File: pf})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := erasure.NewLedger(bytes.Repeat([]byte{9}, erasure.LedgerKeyLen))
	for _, withMarks := range []bool{true, false} {
		cfg := Config{Producer: cl, Topic: consentT, Store: consentredis.NewRedisStore(rdb), Guard: guard, AuditTopic: auditT}
		if withMarks {
			cfg.Marks = l
		}
		api, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(api.Handler())
		do := func(method, path, ctype, body string, header ...string) {
			t.Helper()
			code, resp := pipelinetest.Request(t, method, srv.URL+path, ctype, body, append([]string{"Authorization", "Bearer " + token}, header...)...)
			if code != http.StatusAccepted && code != http.StatusOK {
				t.Fatalf("%s %s: %d %s", method, path, code, resp)
			}
		}
		do("PUT", "/v1/subjects/canary-audit-a1/consents/analytics", "application/json", `{"state":"granted","source":"web_form","policy_version":"v7"}`, SecGPCHeader, "1")
		do("POST", "/v1/subjects/canary-audit-a1/consents/marketing/withdraw", "application/json", ``)
		do("PUT", "/v1/subjects/canary-audit-b2/profile", "application/json", `{"jurisdiction":"ccpa","source":"support_agent"}`)
		do("POST", "/v1/consents/import", "text/csv", "subject_id,purpose,state,jurisdiction,source,policy_version,timestamp\n"+
			"canary-audit-c3,analytics,granted,pdpa,import,v1,\ncanary-audit-c4,nope,granted,pdpa,import,v1,\ncanary-audit-c5,marketing,denied,pdpa,import,v1,\n")
		srv.Close()
	}
	recs, err := kafkaio.ReadAll(context.Background(), conn, auditT)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if bytes.Contains(r.Value, []byte("canary-audit")) || bytes.Contains(r.Key, []byte("canary-audit")) {
			t.Fatalf("a raw subject id in an audit record: %s", r.Value)
		}
		ar, err := audit.Decode(r.Value)
		if err != nil {
			t.Fatalf("%v: %s", err, r.Value)
		}
		if ar.Kind != audit.KindConsent || string(r.Key) != "consent-api" || ar.Principal != "privacy-desk" {
			t.Fatalf("audit record %s (key %s)", r.Value, r.Key)
		}
		cc := ar.Consent
		line := cc.Change + " " + cc.Purpose + " " + cc.Source + " " + cc.PolicyVersion
		switch ref := cc.SubjectRef; {
		case ref == l.Mark("canary-audit-a1"):
			line += " a1"
		case ref == l.Mark("canary-audit-b2"):
			line += " b2"
		case ref != "":
			t.Fatalf("subject ref %q", ref)
		}
		if im := cc.Import; im != nil {
			if im.Accepted != 2 || im.Rejected != 1 || im.Changes["grant"] != 1 || im.Changes["deny"] != 1 || im.Part != 1 || im.Parts != 1 {
				t.Fatalf("import counts %+v", im)
			}
		} else if cc.Version <= 0 || len(cc.ReceiptID) != 32 {
			t.Fatalf("version %d receipt %q", cc.Version, cc.ReceiptID)
		}
		got = append(got, line)
	}
	want := []string{
		"grant analytics web_form v7 a1", "gpc_signal  gpc_signal v7 a1", "withdraw marketing web_form withdrawal a1", "profile  support_agent unspecified b2", "import  import ",
		"grant analytics web_form v7", "gpc_signal  gpc_signal v7", "withdraw marketing web_form withdrawal", "profile  support_agent unspecified", "import  import ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
