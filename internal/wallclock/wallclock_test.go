package wallclock

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNow_OffsetMovesTheDateInATestBinary(t *testing.T) {
	t.Setenv(OffsetEnv, "8760h")
	before := time.Now()
	got := Now()
	after := time.Now()
	if got.Before(before.Add(8760*time.Hour)) || got.After(after.Add(8760*time.Hour)) {
		t.Fatalf("Now() = %v with an offset of a year; real time was %v", got, before)
	}
	t.Setenv(OffsetEnv, "-720h")
	if d := time.Until(Now()); d > -719*time.Hour || d < -721*time.Hour {
		t.Fatalf("Now() is %v from real time with an offset of -720h", d)
	}
	t.Setenv(OffsetEnv, "")
	if d := time.Until(Now()); d > time.Second || d < -time.Second {
		t.Fatalf("Now() is %v from real time without an offset", d)
	}
}

func TestNow_AnOffsetThatIsNotADurationStopsTheRun(t *testing.T) {
	t.Setenv(OffsetEnv, "1 year")
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `ORCHESTRATOR_NOW_OFFSET="1 year" is not a duration`) {
			t.Fatalf("recovered %v", r)
		}
	}()
	Now()
}

// A binary built by `go build` reads the real clock whatever the offset says.
func TestNow_AProductionBinaryIgnoresTheOffset(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "prodclock")
	build := exec.Command("go", "build", "-o", bin, "./testdata/prodclock")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := exec.Command(bin)
	run.Env = append(os.Environ(), OffsetEnv+"=8760h")
	out, err := run.Output()
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(out))
	secs, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil || len(fields) != 2 {
		t.Fatalf("prodclock printed %q", out)
	}
	if d := time.Since(time.Unix(secs, 0)); d > time.Minute || d < -time.Minute || fields[1] != "0s" {
		t.Fatalf("a production binary with %s=8760h reads a clock %v from real time, offset %s", OffsetEnv, -d, fields[1])
	}
}
