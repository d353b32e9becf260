package nearest

import "testing"

func TestName_FindsTyposAndRefusesStrangers(t *testing.T) {
	known := []string{"ORCHESTRATOR_DATA_DIR", "ORCHESTRATOR_DEV", "ORCHESTRATOR_TEAM_AGENT_CALLS_PER_DAY", "source", "since", "status"}
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"ORCHESTRATOR_DATADIR", "ORCHESTRATOR_DATA_DIR", true},  // a letter missing
		{"ORCHESTRATOR_DATA_DRI", "ORCHESTRATOR_DATA_DIR", true}, // two swapped
		{"orchestrator_dev", "ORCHESTRATOR_DEV", true},           // case
		{"ORCHESTRATOR_TEAM_AGENT_CALL_PER_DAY", "ORCHESTRATOR_TEAM_AGENT_CALLS_PER_DAY", true},
		{"sorce", "source", true},
		{"stauts", "status", true},
		{"colour", "", false}, // nothing like it
		{"ORCHESTRATOR_WHATEVER_ELSE", "", false},
	}
	for _, c := range cases {
		got, ok := Name(c.in, known)
		if got != c.want || ok != c.ok {
			t.Errorf("Name(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	if _, ok := Name("x", nil); ok {
		t.Error("a name was found among none")
	}
}
