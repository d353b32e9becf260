package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// A misspelt ORCHESTRATOR_* or OTEL_* variable is named with the one it meant; the
// variables start-up reads, the test suites' own and other programs'
// variables are not.
func TestMisspelt_NamesUnreadVariablesWithTheClosestKnownOne(t *testing.T) {
	env := map[string]string{
		"ORCHESTRATOR_DEV":                     "1",
		"ORCHESTRATOR_DATADIR":                 "/tmp/x",
		"ORCHESTRATOR_TEAM_AGENT_CALL_PER_DAY": "5",
		"ORCHESTRATOR_FROBNICATE":              "yes",
		"ORCHESTRATOR_TEST_MAIN":               "1",
		"ORCHESTRATOR_NOW_OFFSET":              "8760h",
		"HOME":                                 "/root",
		"OTEL_SERVICE_NAME":                    "edge",
		"OTEL_BSP_MAX_QUEUE_SIZE":              "4096",
		"OTEL_EXPORTER_OTLP_ENDPIONT":          "http://jaeger:4318",
	}
	reads := NewReads(func(k string) string { return env[k] })
	if _, err := Load(reads.Getenv); err != nil {
		t.Fatal(err)
	}
	var set []string
	for k := range env {
		set = append(set, k)
	}
	got := Misspelt(set, reads.Names())
	want := []Misspelling{
		{"ORCHESTRATOR_DATADIR", "ORCHESTRATOR_DATA_DIR"},
		{"ORCHESTRATOR_FROBNICATE", ""},
		{"ORCHESTRATOR_TEAM_AGENT_CALL_PER_DAY", "ORCHESTRATOR_TEAM_AGENT_CALLS_PER_DAY"},
		{"OTEL_EXPORTER_OTLP_ENDPIONT", "OTEL_EXPORTER_OTLP_ENDPOINT"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Misspelt = %v\nwant       %v", got, want)
	}
}

// Every ORCHESTRATOR_* variable docs/configuration.md documents is one Load
// reads, so none of them is ever warned about as misspelt.
func TestMisspelt_EveryDocumentedVariableIsRead(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	reads := NewReads(func(string) string { return "" })
	_, _ = Load(reads.Getenv) // peer URLs missing: the names are read all the same
	var documented []string
	braces := regexp.MustCompile(`\{([A-Z,]+)\}`)
	for _, m := range regexp.MustCompile("`(ORCHESTRATOR_[A-Z_{},]+)`").FindAllStringSubmatch(string(doc), -1) {
		name := m[1]
		if b := braces.FindStringSubmatch(name); b != nil {
			for _, alt := range strings.Split(b[1], ",") {
				documented = append(documented, strings.Replace(name, b[0], alt, 1))
			}
			continue
		}
		documented = append(documented, name)
	}
	if len(documented) < 40 {
		t.Fatalf("only %d documented variables found", len(documented))
	}
	for _, m := range Misspelt(documented, reads.Names()) {
		t.Errorf("%s is documented but not read by Load", m.Name)
	}
}
