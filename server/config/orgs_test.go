package config

import (
	"reflect"
	"strings"
	"testing"
)

// ORCHESTRATOR_SOURCE_ORGS binds built-in sources to orgs; a mistake stops
// start-up with one line naming the variable.
func TestLoad_SourceOrgs(t *testing.T) {
	c, err := Load(prod(map[string]string{"ORCHESTRATOR_SOURCE_ORGS": " slack=acme, github=acme;aaa ,alertmanager=big"}))
	want := map[string][]string{"slack": {"acme"}, "github": {"acme", "aaa"}, "alertmanager": {"big"}}
	if err != nil || !reflect.DeepEqual(c.SourceOrgs, want) {
		t.Fatalf("%v %v", c.SourceOrgs, err)
	}
	if c, err := Load(prod(nil)); err != nil || c.SourceOrgs != nil {
		t.Fatalf("unset = %v %v", c.SourceOrgs, err)
	}
	for value, says := range map[string]string{
		"slack":                  "not source=org;org",
		"jira=acme":              `"jira" is not a built-in source`,
		"deploy-bot=acme":        "bind configured sources and Slack apps with orgs: in the sources file",
		"slack=":                 "list at least one org id",
		"slack=acme,slack=big":   "slack is listed twice",
		"github=acme;acme":       `"acme" is listed twice`,
		"github=acme;not an id!": `"not an id!" is not an org id`,
		"github=..":              `".." is not an org id`,
	} {
		_, err := Load(prod(map[string]string{"ORCHESTRATOR_SOURCE_ORGS": value}))
		if err == nil || !strings.Contains(err.Error(), "ORCHESTRATOR_SOURCE_ORGS: ") || !strings.Contains(err.Error(), says) ||
			strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want a line saying %q", value, err, says)
		}
	}
}
