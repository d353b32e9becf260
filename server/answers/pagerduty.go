package answers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// PagerDutyMaxNote is the longest note posted, in characters. PagerDuty's
// REST API reference (createIncidentNote in PagerDuty/api-schema,
// reference/REST/openapiv3.json) gives note.content no maximum length —
// its only stated limit is 2,000 notes per incident — so this bound is the
// appliance's own: long enough for any answer a responder reads in an
// incident's timeline, short enough that a long answer does not bury it.
// A note PagerDuty refuses anyway (400) fails with PagerDuty's words.
const PagerDutyMaxNote = 25000

// DefaultPagerDutyAPIURL is PagerDuty's REST API (EU accounts use the same
// host; PAGERDUTY_API_URL points elsewhere, e.g. a proxy).
const DefaultPagerDutyAPIURL = "https://api.pagerduty.com"

// pagerDutyAccept is the REST API v2 media type PagerDuty asks for.
const pagerDutyAccept = "application/vnd.pagerduty+json;version=2"

// PagerDutyOptions configure the PagerDuty notifier.
type PagerDutyOptions struct {
	// BaseURL is PAGERDUTY_API_URL (default DefaultPagerDutyAPIURL).
	BaseURL string
	// Token is PAGERDUTY_API_TOKEN, a REST API key (account or user)
	// that may write incidents.
	Token string
	// From is PAGERDUTY_FROM_EMAIL: a PagerDuty user's email; PagerDuty
	// writes notes in that user's name and refuses a note without it.
	From string
	// HTTPClient makes the calls (default: a 30 s timeout).
	HTTPClient *http.Client
	// Now is the clock Retry-After dates are read against (default
	// time.Now).
	Now func() time.Time
}

// PagerDuty posts answers as incident notes (POST /incidents/{id}/notes),
// each ending with the run marker line that Find looks for in the
// incident's notes (GET /incidents/{id}/notes).
type PagerDuty struct {
	o    PagerDutyOptions
	base string
}

// NewPagerDuty returns the PagerDuty notifier. Without a token or a From
// email it still serves Check, which says what is missing.
func NewPagerDuty(o PagerDutyOptions) (*PagerDuty, error) {
	if o.BaseURL == "" {
		o.BaseURL = DefaultPagerDutyAPIURL
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("pagerduty: %q is not an absolute http(s) URL", o.BaseURL)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &PagerDuty{o: o, base: strings.TrimRight(o.BaseURL, "/")}, nil
}

// incidentIDPattern is what a PagerDuty incident id looks like (e.g.
// PT4KHLK, Q0RIJJZL24RC6W): it goes into the path, so nothing else passes.
var incidentIDPattern = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

func (p *PagerDuty) target(d Destination) (string, error) {
	if d.Type != TypePagerDutyNote {
		return "", fmt.Errorf("the PagerDuty notifier does not post %q destinations", d.Type)
	}
	if !incidentIDPattern.MatchString(d.IncidentID) {
		return "", fmt.Errorf("pagerduty_note: incident_id %q is not a PagerDuty incident id", d.IncidentID)
	}
	switch {
	case p.o.Token == "" && p.o.From == "":
		return "", errors.New("no PagerDuty credential: set PAGERDUTY_API_TOKEN and PAGERDUTY_FROM_EMAIL")
	case p.o.Token == "":
		return "", errors.New("no PagerDuty credential: set PAGERDUTY_API_TOKEN")
	case p.o.From == "":
		return "", errors.New("PagerDuty needs the email of the user notes are written as: set PAGERDUTY_FROM_EMAIL")
	}
	return d.IncidentID, nil
}

// Check says, without a call, why d cannot be posted.
func (p *PagerDuty) Check(d Destination) error {
	_, err := p.target(d)
	return err
}

// Post adds the answer as a note on the incident.
func (p *PagerDuty) Post(ctx context.Context, d Destination, a Answer) (Posted, error) {
	id, err := p.target(d)
	if err != nil {
		return Posted{}, Permanent(err)
	}
	body, err := json.Marshal(map[string]any{"note": map[string]string{"content": pagerDutyNote(a)}})
	if err != nil {
		return Posted{}, Permanent(err)
	}
	var out struct {
		Note struct {
			ID string `json:"id"`
		} `json:"note"`
	}
	if err := p.do(ctx, http.MethodPost, "/incidents/"+id+"/notes", body, &out); err != nil {
		return Posted{}, fmt.Errorf("note on PagerDuty incident %s: %w", id, err)
	}
	return Posted{MessageID: out.Note.ID}, nil
}

// Find looks through the incident's notes (the API lists them all, with
// no paging) for the one ending with this run's marker line.
func (p *PagerDuty) Find(ctx context.Context, d Destination, a Answer) (Posted, bool, error) {
	id, err := p.target(d)
	if err != nil {
		return Posted{}, false, Permanent(err)
	}
	var out struct {
		Notes []struct {
			ID      string `json:"id"`
			Content string `json:"content"`
		} `json:"notes"`
	}
	if err := p.do(ctx, http.MethodGet, "/incidents/"+id+"/notes", nil, &out); err != nil {
		return Posted{}, false, fmt.Errorf("notes of PagerDuty incident %s: %w", id, err)
	}
	line := "\n" + runMarker(a.RunID) + "\n"
	for i := len(out.Notes) - 1; i >= 0; i-- {
		if strings.Contains("\n"+out.Notes[i].Content+"\n", line) {
			return Posted{MessageID: out.Notes[i].ID}, true, nil
		}
	}
	return Posted{}, false, nil
}

// maxNotesAnswer bounds a notes list read (2,000 notes of a long answer).
const maxNotesAnswer = 64 << 20

// do makes one REST call with PagerDuty's headers and reads its answer.
func (p *PagerDuty) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return Permanent(err)
	}
	req.Header.Set("Authorization", "Token token="+p.o.Token)
	req.Header.Set("Accept", pagerDutyAccept)
	req.Header.Set("From", p.o.From)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.o.HTTPClient.Do(req)
	if err != nil {
		return err // no answer: retried
	}
	if resp.StatusCode/100 != 2 {
		return pagerDutyFailure(resp, readBody(resp, maxErrorBody), p.o.Now())
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxNotesAnswer)).Decode(out); err != nil {
		return fmt.Errorf("PagerDuty answered %d with a body that does not read: %w", resp.StatusCode, err)
	}
	return nil
}

// pagerDutyFailure reads a PagerDuty error ({"error":{message, code,
// errors}}) as the retry stage needs it.
func pagerDutyFailure(resp *http.Response, body []byte, now time.Time) error {
	var e struct {
		Error struct {
			Message string   `json:"message"`
			Code    int      `json:"code"`
			Errors  []string `json:"errors"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	msg := e.Error.Message
	if e.Error.Code != 0 {
		msg += " (code " + strconv.Itoa(e.Error.Code) + ")"
	}
	if len(e.Error.Errors) > 0 {
		msg += ": " + strings.Join(e.Error.Errors, "; ")
	}
	msg = oneLine(msg, 300)
	say := func(format string, args ...any) error {
		s := fmt.Sprintf(format, args...)
		if msg != "" {
			s += ": " + msg
		}
		return errors.New(s)
	}
	switch status := resp.StatusCode; {
	case status == http.StatusTooManyRequests:
		wait, ok := retryAfterHeader(resp.Header, now)
		if !ok {
			// PagerDuty's own header: seconds until the limit resets.
			if n, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Ratelimit-Reset"))); err == nil && n >= 0 {
				wait, ok = time.Duration(n)*time.Second, true
			}
		}
		if !ok {
			wait = time.Minute
		}
		return RetryAfter(say("PagerDuty rate limit (429)"), wait)
	case status == http.StatusUnauthorized:
		return Permanent(say("PagerDuty refused the API token (401; check PAGERDUTY_API_TOKEN)"))
	case status == http.StatusForbidden:
		return Permanent(say("PagerDuty refused the note (403: the API key may be read-only or not reach this incident)"))
	case status == http.StatusNotFound:
		return Permanent(say("no such incident on PagerDuty (404)"))
	case status == http.StatusBadRequest:
		return Permanent(say("PagerDuty refused the note (400: check PAGERDUTY_FROM_EMAIL is a PagerDuty user's email)"))
	case status >= 500:
		return say("PagerDuty answered %d", status)
	default:
		return Permanent(say("PagerDuty answered %d", status))
	}
}

// pagerDutyNote is the note: the answer, a link to the run when there is
// one, and the run marker on the last line, within PagerDutyMaxNote
// characters (a longer answer is cut with a note saying so).
func pagerDutyNote(a Answer) string {
	footer := "\n\n"
	if a.RunURL != "" {
		footer += "Orchestrator Edge run: " + a.RunURL + "\n"
	}
	footer += runMarker(a.RunID)
	text := strings.TrimSpace(a.Text)
	if utf8.RuneCountInString(text)+utf8.RuneCountInString(footer) <= PagerDutyMaxNote {
		return text + footer
	}
	note := "\n\n[This answer was cut to fit a PagerDuty note; the whole answer is kept with the run on the admin page.]"
	if a.RunURL != "" {
		note = "\n\n[This answer was cut to fit a PagerDuty note; the whole answer is on the run's page: " + a.RunURL + "]"
	}
	cut, _ := cutRunes(text, PagerDutyMaxNote-utf8.RuneCountInString(note)-utf8.RuneCountInString(footer))
	return cut + note + footer
}
