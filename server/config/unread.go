package config

import (
	"slices"
	"strings"
	"sync"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/nearest"
)

// A variable nobody reads is a mistake nobody sees: ORCHESTRATOR_DATADIR
// would be ignored and the default used. Reads remembers which variables
// start-up asked for (Load, the sources file); Misspelt then names every
// ORCHESTRATOR_* variable of the environment that none of them read, with
// the closest one that was, for a start-up warning.

// Reads wraps a getenv, remembering every name asked for.
type Reads struct {
	getenv func(string) string
	mu     sync.Mutex
	names  map[string]bool
}

// NewReads returns a Reads over getenv.
func NewReads(getenv func(string) string) *Reads {
	return &Reads{getenv: getenv, names: map[string]bool{}}
}

// Getenv reads name through the wrapped getenv and remembers it.
func (r *Reads) Getenv(name string) string {
	r.mu.Lock()
	r.names[name] = true
	r.mu.Unlock()
	return r.getenv(name)
}

// Names lists the names asked for so far, sorted.
func (r *Reads) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.names))
	for n := range r.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Misspelling is a variable of the environment that nothing read.
type Misspelling struct {
	Name string
	// Closest is the read variable it most likely meant ("" if none is
	// close).
	Closest string
}

// Misspelt names the ORCHESTRATOR_* and OTEL_* variables among set that
// are not in read, sorted, each with the closest read name (Load names
// every standard OTEL_* variable the SDK reads, config.OtelVariables). ORCHESTRATOR_TEST_* and
// ORCHESTRATOR_NOW_OFFSET (a test binary's clock, internal/wallclock)
// belong to the test suites, whose built binaries inherit them, and are
// left alone.
func Misspelt(set, read []string) []Misspelling {
	var out []Misspelling
	for _, name := range set {
		ours := strings.HasPrefix(name, "ORCHESTRATOR_") || strings.HasPrefix(name, "OTEL_")
		if !ours || strings.HasPrefix(name, "ORCHESTRATOR_TEST_") || name == wallclock.OffsetEnv || slices.Contains(read, name) {
			continue
		}
		closest, _ := nearest.Name(name, read)
		out = append(out, Misspelling{Name: name, Closest: closest})
	}
	slices.SortFunc(out, func(a, b Misspelling) int { return strings.Compare(a.Name, b.Name) })
	return out
}
