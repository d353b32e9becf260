package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Name limits: the API server refuses CronJob names over 52 characters (it
// appends 11 for Job names); Services are DNS-1035 labels of at most 63.
const (
	MaxCronJobName = 52
	MaxServiceName = 63
)

// Labels and annotations the orchestrator puts on everything it creates.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelTeamHash  = "incidentfox.io/team-hash"
	AnnotationOrg  = "incidentfox.io/org-id"
	AnnotationTeam = "incidentfox.io/team-node-id"
	ManagedBy      = "incidentfox-orchestrator"
)

// TeamHash identifies a team in a label value: ids may be 128 characters
// and hold characters labels refuse, so the exact ids go in annotations.
func TeamHash(org, team string) string {
	sum := sha256.Sum256([]byte(org + "\x00" + team))
	return hex.EncodeToString(sum[:10])
}

// hashSuffixLen is the length of the hash that ends a hashed name: 16 hex
// characters (64 bits), so no one can search out another team's suffix.
const hashSuffixLen = 16

// TeamObjectName is prefix-{org}-{team} made DNS-1123 safe (lowercase
// letters, digits, '-', starting with a letter) in at most max characters.
// Two teams never share a name, whatever their ids:
//   - the plain form is used only when it maps back to exactly one (org,
//     team): nothing was lowercased, replaced or truncated, and the org has
//     no '-' (else "a-b"+"c" and "a"+"b-c" would meet);
//   - every other name ends in '-' and 16 hex characters of a hash of both
//     ids, and a plain name that happens to end that way is hashed too, so a
//     plain name can never equal a hashed one (team "corp-sre-<hash>" of org
//     "big" against org "big-corp", team "sre").
func TeamObjectName(prefix, org, team string, max int) string {
	cleanOrg, cleanTeam := sanitize(org), sanitize(team)
	plain := prefix + "-" + cleanOrg + "-" + cleanTeam
	if cleanOrg == org && cleanTeam == team && !strings.Contains(org, "-") && len(plain) <= max && !endsInHash(plain) {
		return plain
	}
	suffix := TeamHash(org, team)[:hashSuffixLen]
	head := strings.TrimRight(plain[:min(len(plain), max-len(suffix)-1)], "-")
	return head + "-" + suffix
}

// endsInHash reports whether name ends the way a hashed name does.
func endsInHash(name string) bool {
	i := len(name) - hashSuffixLen - 1
	if i < 0 || name[i] != '-' {
		return false
	}
	for _, c := range name[i+1:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// CronJobName is the name of a team's pipeline CronJob.
func CronJobName(org, team string) string {
	return TeamObjectName("ai-pipeline", org, team, MaxCronJobName)
}

// DependencyDiscoveryCronJobName is the name of a team's dependency
// discovery CronJob.
func DependencyDiscoveryCronJobName(org, team string) string {
	return TeamObjectName("dep-discovery", org, team, MaxCronJobName)
}

// DedicatedAgentName is the name of a team's dedicated agent Deployment and
// Service.
func DedicatedAgentName(org, team string) string {
	return TeamObjectName("agent-dedicated", org, team, MaxServiceName)
}

// sanitize lowercases and replaces every character outside [a-z0-9-] with
// '-', collapsing runs and trimming the ends.
func sanitize(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.Trim(b.String(), "-")
	if out == "" {
		out = "x"
	}
	return out
}
