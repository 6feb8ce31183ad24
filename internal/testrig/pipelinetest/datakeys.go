package pipelinetest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/privacy-pipeline/pipeline/internal/fields/subjectkey"
	"github.com/privacy-pipeline/pipeline/schemas"
)

// EncryptingPolicy writes, under a temporary directory, the checked-in
// policy changed so that personalization encrypts the e-mail address and
// tokenizes the phone number, and a new key-encryption key file; it
// returns both paths (PIPELINE_POLICY_FILE, PIPELINE_KEK_FILE) and the KMS.
func EncryptingPolicy(t testing.TB) (policyFile, kekFile string, kms *subjectkey.FileKMS) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(schemas.PolicyJSON(), &doc); err != nil {
		t.Fatal(err)
	}
	fields := doc["purposes"].(map[string]any)["personalization"].(map[string]any)["fields"].(map[string]any)
	fields["email"] = map[string]any{"action": "encrypt"}
	fields["phone"] = map[string]any{"action": "tokenize"}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	policyFile, kekFile = filepath.Join(dir, "policy.json"), filepath.Join(dir, "kek.json")
	if err := os.WriteFile(policyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := subjectkey.GenerateKEKFile(kekFile); err != nil {
		t.Fatal(err)
	}
	kms, err = subjectkey.LoadKEKFile(kekFile)
	if err != nil {
		t.Fatal(err)
	}
	return policyFile, kekFile, kms
}
