// Package pyhmac signs with Python's own hmac and hashlib, for tests: an
// HMAC implementation that shares no code with the verifiers under test.
// Without python3 a test skips, unless ORCHESTRATOR_TEST_REQUIRE_PYTHON=1
// (CI) makes that a failure.
package pyhmac

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const script = `import sys, hmac, hashlib, base64
key, alg, enc = sys.argv[1].encode(), sys.argv[2], sys.argv[3]
mac = hmac.new(key, sys.stdin.buffer.read(), getattr(hashlib, alg)).digest()
print(base64.b64encode(mac).decode() if enc == "base64" else mac.hex())`

// Sign returns HMAC-algorithm(secret, msg) as Python computes it, in hex or
// base64 (standard alphabet, padded).
func Sign(t testing.TB, algorithm, encoding, secret string, msg []byte) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("ORCHESTRATOR_TEST_REQUIRE_PYTHON") == "1" {
			t.Fatal("python3 is required (apt-get install python3)")
		}
		t.Skip("python3 not found")
	}
	cmd := exec.Command(py, "-c", script, secret, algorithm, encoding)
	cmd.Stdin = strings.NewReader(string(msg))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	return strings.TrimSpace(string(out))
}
