package config

import (
	"net/mail"
	"os"
	"regexp"

	"github.com/golang-jwt/jwt/v5"
)

// GitHubAnswers is how answers are posted as GitHub comments: a token, or
// a GitHub App (never both), and the API's URL.
type GitHubAnswers struct {
	// APIURL is GITHUB_API_URL ("" = https://api.github.com/; GitHub
	// Enterprise Server: https://HOST/api/v3).
	APIURL string
	// Token is GITHUB_TOKEN.
	Token Secret
	// AppID and AppKeyFile are GITHUB_APP_ID and
	// GITHUB_APP_PRIVATE_KEY_FILE (a readable PEM RSA key, checked at start).
	AppID      string
	AppKeyFile string
}

// PagerDutyAnswers is how answers are posted as PagerDuty incident notes.
type PagerDutyAnswers struct {
	// APIURL is PAGERDUTY_API_URL ("" = https://api.pagerduty.com).
	APIURL string
	// Token is PAGERDUTY_API_TOKEN; FromEmail is PAGERDUTY_FROM_EMAIL, the
	// PagerDuty user notes are written as (required with the token).
	Token     Secret
	FromEmail string
}

// appIDPattern: a GitHub App's numeric id, or its client id (Iv…), which
// GitHub also accepts as the JWT's issuer.
var appIDPattern = regexp.MustCompile(`^([0-9]{1,20}|Iv[0-9A-Za-z.]{1,40})$`)

// github reads GITHUB_TOKEN, GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY_FILE and
// GITHUB_API_URL.
func (p *parser) github() GitHubAnswers {
	g := GitHubAnswers{
		APIURL:     p.url("GITHUB_API_URL", false),
		Token:      p.secret("GITHUB_TOKEN"),
		AppID:      p.raw("GITHUB_APP_ID"),
		AppKeyFile: p.raw("GITHUB_APP_PRIVATE_KEY_FILE"),
	}
	switch {
	case g.AppID == "" && g.AppKeyFile == "":
	case g.Token != "":
		p.fail("GITHUB_APP_ID", "set GITHUB_TOKEN or a GitHub App (GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE), not both")
	case g.AppID == "":
		p.fail("GITHUB_APP_ID", "is required with GITHUB_APP_PRIVATE_KEY_FILE (the App's id, a number)")
	case !appIDPattern.MatchString(g.AppID):
		p.fail("GITHUB_APP_ID", "%q is not a GitHub App id (a number, or the App's client id Iv…)", g.AppID)
	case g.AppKeyFile == "":
		p.fail("GITHUB_APP_PRIVATE_KEY_FILE", "is required with GITHUB_APP_ID (the path of the App's private key, a .pem file)")
	default:
		data, err := os.ReadFile(g.AppKeyFile)
		if err != nil {
			p.fail("GITHUB_APP_PRIVATE_KEY_FILE", "cannot read %s", g.AppKeyFile)
		} else if _, err := jwt.ParseRSAPrivateKeyFromPEM(data); err != nil {
			p.fail("GITHUB_APP_PRIVATE_KEY_FILE", "%s is not a PEM-encoded RSA private key (GitHub's App keys are)", g.AppKeyFile)
		}
	}
	return g
}

// pagerDuty reads PAGERDUTY_API_TOKEN, PAGERDUTY_FROM_EMAIL and
// PAGERDUTY_API_URL.
func (p *parser) pagerDuty() PagerDutyAnswers {
	pd := PagerDutyAnswers{
		APIURL:    p.url("PAGERDUTY_API_URL", false),
		Token:     p.secret("PAGERDUTY_API_TOKEN"),
		FromEmail: p.raw("PAGERDUTY_FROM_EMAIL"),
	}
	if pd.FromEmail != "" {
		if a, err := mail.ParseAddress(pd.FromEmail); err != nil || a.Address != pd.FromEmail {
			p.fail("PAGERDUTY_FROM_EMAIL", "%q is not an email address (user@example.com)", pd.FromEmail)
		}
	}
	switch {
	case pd.Token != "" && pd.FromEmail == "":
		p.fail("PAGERDUTY_FROM_EMAIL", "is required with PAGERDUTY_API_TOKEN: PagerDuty writes each note as the user with this email")
	case pd.Token == "" && pd.FromEmail != "":
		p.fail("PAGERDUTY_API_TOKEN", "is required with PAGERDUTY_FROM_EMAIL (a REST API key that may write incidents)")
	}
	return pd
}
