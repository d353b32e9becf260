package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// SourcesFile is what a sources file (ORCHESTRATOR_SOURCES_FILE) declares:
// configured sources and more Slack apps (SPEC §6).
type SourcesFile struct {
	Sources   []*Source
	SlackApps []SlackApp
}

// SlackAppSpec is one entry of the file's slack_apps.
type SlackAppSpec struct {
	Slug             string `json:"slug"`
	SigningSecretEnv string `json:"signing_secret_env"`
	// Orgs bind the app to orgs: its events route only to their teams.
	Orgs []string `json:"orgs,omitempty"`
	// BotTokenEnv names the variable holding the app's bot token, which
	// posts answers in its workspace (optional: without it, answers to its
	// mentions are left to the agent).
	BotTokenEnv string `json:"bot_token_env,omitempty"`
}

// ParseSourcesFile reads a sources file, with secrets read through getenv.
// An error is one line naming the source (or Slack app) and the field.
func ParseSourcesFile(data []byte, getenv func(string) string) (*SourcesFile, error) {
	sections, err := SplitSourcesFile(data)
	if err != nil {
		return nil, err
	}
	var top struct {
		Sources   []json.RawMessage
		SlackApps []json.RawMessage
	}
	for _, s := range []struct {
		key string
		to  *[]json.RawMessage
	}{{"sources", &top.Sources}, {"slack_apps", &top.SlackApps}} {
		if raw, ok := sections[s.key]; ok && string(raw) != "null" {
			if err := strictJSON(raw, s.to); err != nil {
				return nil, fmt.Errorf("%s: must be a list", s.key)
			}
		}
	}
	if len(top.Sources) > MaxSources {
		return nil, fmt.Errorf("sources: %d sources listed, at most %d", len(top.Sources), MaxSources)
	}
	if len(top.SlackApps) > MaxSources {
		return nil, fmt.Errorf("slack_apps: %d Slack apps listed, at most %d", len(top.SlackApps), MaxSources)
	}
	out := &SourcesFile{}
	names := map[string]bool{}
	for i, raw := range top.Sources {
		var spec SourceSpec
		if err := strictJSON(raw, &spec); err != nil {
			var named struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(raw, &named)
			if named.Name == "" {
				named.Name = fmt.Sprintf("#%d", i+1)
			}
			return nil, fmt.Errorf("source %q: %s", named.Name, err)
		}
		if names[spec.Name] {
			return nil, &fieldError{source: spec.Name, field: "name", msg: "listed twice"}
		}
		names[spec.Name] = true
		src, err := NewConfigured(spec, getenv)
		if err != nil {
			return nil, err
		}
		out.Sources = append(out.Sources, src)
	}
	for i, raw := range top.SlackApps {
		var spec SlackAppSpec
		if err := strictJSON(raw, &spec); err != nil {
			return nil, fmt.Errorf("slack app #%d: %s", i+1, err)
		}
		if !slugPattern.MatchString(spec.Slug) || spec.Slug == "events" || spec.Slug == "interactions" {
			return nil, fmt.Errorf("slack app %q: slug: must match [a-z][a-z0-9-]{0,31} and not be events or interactions", spec.Slug)
		}
		if !envName.MatchString(spec.SigningSecretEnv) {
			return nil, fmt.Errorf("slack app %q: signing_secret_env: must name an environment variable (secrets are never written in the file)", spec.Slug)
		}
		var secrets []string
		for _, s := range strings.Split(getenv(spec.SigningSecretEnv), ",") {
			if s = strings.TrimSpace(s); s != "" {
				secrets = append(secrets, s)
			}
		}
		if len(secrets) == 0 {
			return nil, fmt.Errorf("slack app %q: signing_secret_env: %s is unset or empty", spec.Slug, spec.SigningSecretEnv)
		}
		for _, a := range out.SlackApps {
			if a.Slug == spec.Slug {
				return nil, fmt.Errorf("slack app %q: slug: listed twice", spec.Slug)
			}
		}
		if spec.Orgs != nil {
			if err := CheckOrgs(spec.Orgs); err != nil {
				return nil, fmt.Errorf("slack app %q: orgs: %v", spec.Slug, err)
			}
		}
		app := SlackApp{Slug: spec.Slug, Secrets: secrets, BotTokenEnv: spec.BotTokenEnv, Orgs: spec.Orgs}
		if spec.BotTokenEnv != "" {
			if !envName.MatchString(spec.BotTokenEnv) {
				return nil, fmt.Errorf("slack app %q: bot_token_env: must name an environment variable (tokens are never written in the file)", spec.Slug)
			}
			if app.BotToken = strings.TrimSpace(getenv(spec.BotTokenEnv)); app.BotToken == "" {
				return nil, fmt.Errorf("slack app %q: bot_token_env: %s is unset or empty", spec.Slug, spec.BotTokenEnv)
			}
		}
		out.SlackApps = append(out.SlackApps, app)
	}
	return out, nil
}

// FileSections are the top-level keys a sources file may have: the
// sources and Slack apps (read here, at start) and the sections the
// appliance reloads while it runs (server/policy reads those).
var FileSections = []string{"sources", "slack_apps", "routes", "destinations", "time_intervals", "inhibit_rules"}

// Bounds of a sources file: every source adds a route, a verifier and
// metric series, and a file of 60,000 sources took 20 s and 1.3 GB to load.
const (
	// MaxSourcesFileBytes is the largest sources file read.
	MaxSourcesFileBytes = 1 << 20
	// MaxSources is the most configured sources (and, apart, Slack apps)
	// a file may list.
	MaxSources = 256
)

// ReadSourcesFile reads a sources file, refusing one larger than
// MaxSourcesFileBytes without reading past that.
func ReadSourcesFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSourcesFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSourcesFileBytes {
		return nil, fmt.Errorf("larger than %d bytes (1 MiB)", MaxSourcesFileBytes)
	}
	return data, nil
}

// SplitSourcesFile reads a sources file's YAML into its top-level
// sections, refusing a key that is not one of FileSections.
func SplitSourcesFile(data []byte) (map[string]json.RawMessage, error) {
	if len(data) > MaxSourcesFileBytes {
		return nil, fmt.Errorf("the file is larger than %d bytes (1 MiB)", MaxSourcesFileBytes)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("not YAML: %s", oneLine(err))
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		return nil, fmt.Errorf("the file must be a mapping with the keys %s", strings.Join(FileSections, ", "))
	}
	for k := range top {
		if !slices.Contains(FileSections, k) {
			return nil, fmt.Errorf("%s: unknown field (the file has %s)", k, strings.Join(FileSections, ", "))
		}
	}
	return top, nil
}

// DecodeSection decodes one entry of a sources file section (as
// SplitSourcesFile gives it) refusing unknown fields, with an error worded
// for an operator: which field, and that secrets are never inline. The
// rooms that own the reloadable sections use it.
func DecodeSection(data []byte, v any) error { return strictJSON(data, v) }

// strictJSON decodes refusing unknown fields, and words the error for an
// operator: which field, and that secrets are never inline.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		if strings.Contains(strings.ToLower(f), "secret") || strings.Contains(strings.ToLower(f), "token") ||
			strings.Contains(strings.ToLower(f), "password") {
			return fmt.Errorf("%s: secrets are never written in the file; name an environment variable in secret_env", f)
		}
		return fmt.Errorf("%s: unknown field", f)
	}
	var te *json.UnmarshalTypeError
	if ok := asTypeError(err, &te); ok {
		return fmt.Errorf("%s: must be %s", te.Field, kindWord(te.Type.Kind().String()))
	}
	return fmt.Errorf("%s", oneLine(err))
}

func asTypeError(err error, te **json.UnmarshalTypeError) bool {
	t, ok := err.(*json.UnmarshalTypeError)
	if ok {
		*te = t
	}
	return ok
}

func kindWord(k string) string {
	switch k {
	case "slice":
		return "a list"
	case "map", "struct", "ptr":
		return "a mapping"
	case "bool":
		return "true or false"
	}
	return "a " + k
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
