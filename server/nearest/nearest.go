// Package nearest finds the known name a mistyped one was meant to be: the
// start-up warning about a misspelt environment variable and the API's
// answer to an unknown query parameter both say "did you mean …".
package nearest

import "strings"

// Name returns the name of known closest to name (case-insensitive edit
// distance), and false when none is close enough to be a likely typo: at
// most a third of the longer name's characters may differ.
func Name(name string, known []string) (string, bool) {
	best, bestD := "", -1
	for _, k := range known {
		d := distance(strings.ToUpper(name), strings.ToUpper(k))
		if bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD < 0 || bestD*3 > max(len(name), len(best)) {
		return "", false
	}
	return best, true
}

// distance is the Levenshtein distance, with a transposition of two
// neighbours counted as one edit (optimal string alignment).
func distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
