package config

import "testing"

// TestEachCommandHasItsOwnOpsPort is issue 10's new-user friction: with
// PIPELINE_HTTP_ADDR unset, the processes of one host must not collide.
func TestEachCommandHasItsOwnOpsPort(t *testing.T) {
	var c Config
	seen := map[string]string{}
	for _, cmd := range []string{"privacy", "consent-sync", "kanon", "kanon-records"} {
		a := c.OpsAddr(cmd)
		if other, dup := seen[a]; dup {
			t.Fatalf("%s and %s both default to %s", cmd, other, a)
		}
		seen[a] = cmd
	}
	if seen[":8080"] != "" {
		t.Fatal("an ops port collides with the consent API's :8080")
	}
	c.HTTPAddr = "127.0.0.1:0"
	if c.OpsAddr("kanon") != "127.0.0.1:0" {
		t.Fatal("PIPELINE_HTTP_ADDR does not win")
	}
}
