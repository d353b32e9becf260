package ingest

import "testing"

// The cheap test agrees with the regular expression it stands in front of,
// in every case and position.
func TestCredentialShapedAgreesWithTheExpression(t *testing.T) {
	for _, v := range []string{
		"", "application/json", "Slackbot 1.0 (+https://api.slack.com/robots)", "1764115200",
		"Bearer abc", "BEARER abc", "bearer", "xbearer abc", "Basic dXNlcg==", "bAsIc x", "basically fine",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2ln", "EYJABCD.EFGHI.", "eyJ.only", "whsec_abc", "WHSEC_abc",
		"xoxb-1234", "XOXP-1", "xox-no", "a xoxa-1", "axoxb-1", "token=eyJaaaa.bbbb.cccc",
		"baſic x", "\u212aey", "beare\u017f",
	} {
		if got, want := credentialShaped(v), credentialValue.MatchString(v); got != want {
			t.Errorf("credentialShaped(%q) = %v, the expression says %v", v, got, want)
		}
	}
}

func FuzzCredentialShaped(f *testing.F) {
	f.Add("Bearer x")
	f.Add("eyJaaaa.bbbb.c")
	f.Fuzz(func(t *testing.T, v string) {
		if got, want := credentialShaped(v), credentialValue.MatchString(v); got != want {
			t.Fatalf("credentialShaped(%q) = %v, the expression says %v", v, got, want)
		}
	})
}
