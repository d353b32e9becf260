// Package ids holds the one rule for the ids the orchestrator puts in
// paths, keys and peer URLs: org and team node ids and agent names, whether
// they come from a caller or from a peer's answer (SPEC §4, §18).
package ids

import "regexp"

var (
	nodeID    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
	agentName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// Valid reports whether s is an org or team node id: 1–128 characters of
// [A-Za-z0-9._-], and not "." or "..", which a path would resolve.
func Valid(s string) bool { return nodeID.MatchString(s) && !dots(s) }

// ValidAgent reports whether s can name an agent in the run path: 1–64
// characters of [A-Za-z0-9._-], not "." or "..".
func ValidAgent(s string) bool { return agentName.MatchString(s) && !dots(s) }

func dots(s string) bool { return s == "." || s == ".." }
