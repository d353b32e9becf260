// Command testsum reads `go test -json` on stdin and prints a quiet summary:
// the output of each failed test, build failures, the slowest packages, and a
// closing line "N passed, N failed, N skipped". It exits non-zero if anything
// failed, including a package that did not build.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	os.Exit(summarize(os.Stdin, os.Stdout))
}

func summarize(in io.Reader, out io.Writer) int {
	var passed, failed, skipped int
	output := map[string]*strings.Builder{} // package/test → output
	var failures []string
	var buildErrs []string
	pkgFailed := map[string]bool{}
	pkgTime := map[string]float64{}

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if json.Unmarshal(line, &e) != nil {
			// Not JSON: build errors and the like come through as text.
			if s := strings.TrimSpace(string(line)); s != "" {
				buildErrs = append(buildErrs, s)
			}
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "build-output":
			if s := strings.TrimSpace(e.Output); s != "" {
				buildErrs = append(buildErrs, s)
			}
		case "output":
			b := output[key]
			if b == nil {
				b = &strings.Builder{}
				output[key] = b
			}
			b.WriteString(e.Output)
		case "pass", "fail", "skip":
			if e.Test == "" {
				pkgTime[e.Package] = e.Elapsed
				if e.Action == "fail" {
					pkgFailed[e.Package] = true
				}
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "skip":
				skipped++
			case "fail":
				failed++
				failures = append(failures, key)
			}
		}
	}
	for _, key := range failures {
		fmt.Fprintf(out, "--- FAIL %s\n%s\n", key, output[key])
	}
	// A package can fail without a failing test: a build error, a panic in
	// TestMain, a timeout.
	var pkgs []string
	for p := range pkgFailed {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		fmt.Fprintf(out, "FAIL package %s\n%s\n", p, output[p+" "])
	}
	for _, s := range buildErrs {
		fmt.Fprintln(out, s)
	}

	type pt struct {
		pkg string
		sec float64
	}
	var times []pt
	for p, s := range pkgTime {
		times = append(times, pt{p, s})
	}
	sort.Slice(times, func(i, j int) bool { return times[i].sec > times[j].sec })
	fmt.Fprintf(out, "%d packages; slowest:", len(times))
	for _, t := range times[:min(3, len(times))] {
		fmt.Fprintf(out, " %s %.1fs;", t.pkg[strings.LastIndex(t.pkg, "/")+1:], t.sec)
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || len(pkgs) > 0 || len(buildErrs) > 0 || passed == 0 {
		return 1
	}
	return 0
}
