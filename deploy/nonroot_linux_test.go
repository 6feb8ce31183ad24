//go:build linux

package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"go.yaml.in/yaml/v3"
)

// ids is a numeric user and group.
type ids struct{ uid, gid uint32 }

func parseIDs(t *testing.T, what, s string) ids {
	t.Helper()
	u, g, ok := strings.Cut(strings.TrimSpace(s), ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("%s is %q, not numeric uid:gid", what, s)
	}
	return ids{uint32(uid), uint32(gid)}
}

// imageFacts reads what the Dockerfile gives the runtime: the numeric USER
// of the final stage, and the owner and mode of /secrets.
func imageFacts(t *testing.T) (user, secretsOwner ids, secretsMode os.FileMode) {
	t.Helper()
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := strings.Split(string(df), "\nFROM ")
	final := stages[len(stages)-1]
	m := regexp.MustCompile(`(?m)^USER (\S+)$`).FindStringSubmatch(final)
	if m == nil {
		t.Fatal("the final stage sets no USER")
	}
	user = parseIDs(t, "the image's USER (a kubelet checks runAsNonRoot only for a numeric one)", m[1])
	if user.uid == 0 {
		t.Fatal("the image runs as root")
	}
	m = regexp.MustCompile(`(?m)^COPY --from=build --chown=(\S+) /out/secrets /secrets$`).FindStringSubmatch(final)
	if m == nil {
		t.Fatal("the image does not give /secrets to a user")
	}
	secretsOwner = parseIDs(t, "the owner of /secrets", m[1])
	m = regexp.MustCompile(`(?m)chmod (0[0-7]{3}) /out/secrets`).FindStringSubmatch(string(df))
	if m == nil {
		t.Fatal("the image does not set the mode of /secrets")
	}
	mode, _ := strconv.ParseUint(m[1], 8, 32)
	return user, secretsOwner, os.FileMode(mode)
}

// buildAs builds the production binary where any user can run it.
func buildAs(t *testing.T) (bin, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test runs the binary as other users and needs root (CI=true: it must run)")
		}
		t.Skip("needs root to run the binary as uid 65532 (runs in make test)")
	}
	dir = t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin = filepath.Join(dir, "pipeline")
	out, err := exec.Command("go", "build", "-tags", "production", "-o", bin, "../cmd/pipeline").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin, dir
}

// runAs runs the binary as uid:gid with the supplementary groups.
func runAs(bin string, who ids, groups []uint32, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: who.uid, Gid: who.gid, Groups: groups}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func mkdirOwned(t *testing.T, path string, owner ids, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, int(owner.uid), int(owner.gid)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestComposeKeyringIsReadableByTheProcessor is the docker compose defect:
// keygen wrote the keyring as root with mode 0600 and the processor, run as
// the image's non-root user, died with "permission denied". The test gives
// a directory the owner and mode a fresh named volume gets from the image's
// /secrets, runs keygen as the compose file's keygen user, and loads the
// keyring as the image's user, as 'pipeline run privacy' would.
func TestComposeKeyringIsReadableByTheProcessor(t *testing.T) {
	bin, dir := buildAs(t)
	user, owner, mode := imageFacts(t)
	var compose struct {
		Services map[string]struct {
			User    string   `yaml:"user"`
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	keygen, ok := compose.Services["keygen"]
	if !ok {
		t.Fatal("no keygen service")
	}
	keygenUser := user
	if keygen.User != "" {
		keygenUser = parseIDs(t, "the keygen service's user", keygen.User)
	}
	if u := compose.Services["privacy"].User; u != "" {
		user = parseIDs(t, "the privacy service's user", u)
	}
	vol := filepath.Join(dir, "secrets")
	mkdirOwned(t, vol, owner, mode)
	// keygen's own command, with the volume's path.
	args := append([]string(nil), keygen.Command...)
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "/secrets", vol)
	}
	for range 2 { // the second start keeps the file
		if out, err := runAs(bin, keygenUser, nil, args...); err != nil {
			t.Fatalf("keygen as %d:%d: %v\n%s", keygenUser.uid, keygenUser.gid, err, out)
		}
	}
	file := filepath.Join(vol, "pseudonym-keys.json")
	if out, err := runAs(bin, user, nil, "keys", "check", "--file", file); err != nil {
		t.Fatalf("the processor (%d:%d) cannot load the keyring keygen wrote: %v\n%s", user.uid, user.gid, err, out)
	} else if strings.Contains(out, "secret") {
		t.Fatalf("keys check printed more than ids: %s", out)
	}

	// The old compose file ran keygen as root in a root-owned volume: the
	// same check must catch it.
	old := filepath.Join(dir, "old-secrets")
	mkdirOwned(t, old, ids{0, 0}, 0o755)
	if out, err := runAs(bin, ids{0, 0}, nil, "keys", "generate", "--out", filepath.Join(old, "k.json")); err != nil {
		t.Fatalf("keygen as root: %v\n%s", err, out)
	}
	if out, err := runAs(bin, user, nil, "keys", "check", "--file", filepath.Join(old, "k.json")); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("the old layout (root keygen, 0600) passed the check: %v\n%s", err, out)
	}
}

// TestKubernetesSecretIsReadableByTheProcessor is the Kubernetes defect:
// the key Secret was mounted 0400 (root-owned) with no fsGroup, so the
// non-root processor could not read it. The kubelet mounts a Secret's files
// as root:<fsGroup> with defaultMode; the test makes exactly that file and
// loads it as the pod's runAsUser:runAsGroup with fsGroup as a
// supplementary group.
func TestKubernetesSecretIsReadableByTheProcessor(t *testing.T) {
	bin, dir := buildAs(t)
	user, _, _ := imageFacts(t)
	for _, f := range []string{"k8s/privacy.yaml"} {
		docs := readYAMLDocs(t, f)
		for _, d := range docs {
			spec := dig(d, "spec", "template", "spec")
			if spec == nil {
				continue
			}
			sc, _ := spec["securityContext"].(map[string]any)
			pod := ids{uint32(num(t, sc, "runAsUser")), uint32(num(t, sc, "runAsGroup"))}
			fsGroup := uint32(num(t, sc, "fsGroup"))
			if pod.uid != user.uid {
				t.Errorf("%s: runAsUser %d is not the image's user %d", f, pod.uid, user.uid)
			}
			for _, v := range spec["volumes"].([]any) {
				sec := dig(v.(map[string]any), "secret")
				if sec == nil {
					continue
				}
				mode := os.FileMode(num(t, sec, "defaultMode"))
				mount := filepath.Join(dir, fmt.Sprint(sec["secretName"]))
				mkdirOwned(t, mount, ids{0, fsGroup}, 0o755)
				src := filepath.Join(dir, "generated.json")
				os.Remove(src)
				if out, err := runAs(bin, ids{0, 0}, nil, "keys", "generate", "--out", src); err != nil {
					t.Fatalf("keys generate: %v\n%s", err, out)
				}
				b, err := os.ReadFile(src)
				if err != nil {
					t.Fatal(err)
				}
				file := filepath.Join(mount, "pseudonym-keys.json")
				if err := os.WriteFile(file, b, mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(file, 0, int(fsGroup)); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(file, mode); err != nil {
					t.Fatal(err)
				}
				if out, err := runAs(bin, pod, []uint32{fsGroup}, "keys", "check", "--file", file); err != nil {
					t.Fatalf("%s: the pod (%d:%d, fsGroup %d) cannot read its Secret (mode %04o): %v\n%s", f, pod.uid, pod.gid, fsGroup, mode, err, out)
				}
				// The old manifest: 0400, root-owned, no fsGroup.
				if err := os.Chown(file, 0, 0); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(file, 0o400); err != nil {
					t.Fatal(err)
				}
				if out, err := runAs(bin, pod, nil, "keys", "check", "--file", file); err == nil {
					t.Fatalf("the old Secret (0400, no fsGroup) passed the check:\n%s", out)
				}
			}
		}
	}
}

// TestEveryPodRunsAsTheImagesNonRootUser: the kubelet refuses
// runAsNonRoot with a named USER; every pod must say the numeric user.
func TestEveryPodRunsAsTheImagesNonRootUser(t *testing.T) {
	user, _, _ := imageFacts(t)
	files, _ := filepath.Glob("k8s/*.yaml")
	pods := 0
	for _, f := range files {
		for _, d := range readYAMLDocs(t, f) {
			spec := dig(d, "spec", "template", "spec")
			if spec == nil {
				continue
			}
			pods++
			sc, _ := spec["securityContext"].(map[string]any)
			if sc["runAsNonRoot"] != true || uint32(num(t, sc, "runAsUser")) != user.uid || uint32(num(t, sc, "runAsGroup")) != user.gid || sc["fsGroup"] == nil {
				t.Errorf("%s %v: pod securityContext %v (want runAsNonRoot, runAsUser %d, runAsGroup %d, fsGroup)", f, dig(d, "metadata")["name"], sc, user.uid, user.gid)
			}
			for _, c := range spec["containers"].([]any) {
				csc := dig(c.(map[string]any), "securityContext")
				if csc["allowPrivilegeEscalation"] != false || csc["readOnlyRootFilesystem"] != true {
					t.Errorf("%s %v: container securityContext %v", f, dig(d, "metadata")["name"], csc)
				}
				if dig(c.(map[string]any), "resources") == nil {
					t.Errorf("%s %v: container without resources", f, dig(d, "metadata")["name"])
				}
			}
		}
	}
	if pods < 5 {
		t.Fatalf("only %d pod templates found", pods)
	}
}

func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}

func num(t *testing.T, m map[string]any, key string) int {
	t.Helper()
	switch v := m[key].(type) {
	case int:
		return v
	}
	t.Fatalf("%s is %v, not a number", key, m[key])
	return 0
}
