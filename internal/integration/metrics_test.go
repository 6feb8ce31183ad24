package integration

import (
	"io"
	"net/http/httptest"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/opsserver"
)

func gatherText(t testing.TB, r *rig) string {
	srv := httptest.NewServer(opsserver.Handler(r.reg, r.pp.Processor.Ready))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
