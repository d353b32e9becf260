package answers_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
)

const (
	pdToken = "u+pdtestkey123"
	pdFrom  = "oncall-bot@acme.example"
)

var incident = answers.Destination{Type: answers.TypePagerDutyNote, IncidentID: "PT4KHLK"}

func pagerDutyFake(t testing.TB) (*peerstest.PagerDuty, *httptest.Server) {
	t.Helper()
	fake := peerstest.NewPagerDuty()
	fake.AddToken(pdToken, false)
	fake.AddToken("readonlykey", true)
	fake.AddUser(pdFrom)
	fake.AddIncident("PT4KHLK")
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return fake, srv
}

func newPagerDuty(t *testing.T, o answers.PagerDutyOptions) *answers.PagerDuty {
	t.Helper()
	p, err := answers.NewPagerDuty(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPagerDuty_NoteIsPostedOnceAndFoundOnRetry(t *testing.T) {
	fake, srv := pagerDutyFake(t)
	pd := newPagerDuty(t, answers.PagerDutyOptions{BaseURL: srv.URL, Token: pdToken, From: pdFrom})
	ctx := context.Background()
	a := answer("run-9c1", "Disk full on db-3: the WAL archive stopped at 02:10.")

	if _, ok, err := pd.Find(ctx, incident, a); err != nil || ok {
		t.Fatalf("Find before the post = %v, %v", ok, err)
	}
	p, err := pd.Post(ctx, incident, a)
	if err != nil {
		t.Fatal(err)
	}
	notes := fake.Notes("PT4KHLK")
	want := a.Text + "\n\nOrchestrator Edge run: " + a.RunURL + "\norchestrator-edge:run=run-9c1"
	if len(notes) != 1 || notes[0].Content != want || notes[0].From != pdFrom || p.MessageID != notes[0].ID {
		t.Fatalf("notes %+v, posted %+v; want one note %q", notes, p, want)
	}
	call := fake.CallsTo(peerstest.RoutePagerDutyCreateNote)[0]
	if call.Auth != "Token token="+pdToken || call.Header.Get("Accept") != peerstest.PagerDutyAccept {
		t.Fatalf("headers %v", call.Header)
	}
	got, ok, err := pd.Find(ctx, incident, a)
	if err != nil || !ok || got != p {
		t.Fatalf("Find = %+v %v %v; want %+v", got, ok, err, p)
	}
	// A run whose id is a prefix of this one's is not found.
	if _, ok, _ := pd.Find(ctx, incident, answer("run-9c", "")); ok {
		t.Fatal("a prefix of the run id matched")
	}
}

func TestPagerDuty_ErrorsAreReadAsPagerDutyMeansThem(t *testing.T) {
	fake, srv := pagerDutyFake(t)
	ctx := context.Background()
	ok := newPagerDuty(t, answers.PagerDutyOptions{BaseURL: srv.URL, Token: pdToken, From: pdFrom})
	type want struct {
		permanent bool
		delay     time.Duration
		says      string
	}
	cases := []struct {
		name  string
		pd    *answers.PagerDuty
		d     answers.Destination
		fault *peerstest.Fault
		want  want
	}{
		{"bad token", newPagerDuty(t, answers.PagerDutyOptions{BaseURL: srv.URL, Token: "nope", From: pdFrom}), incident, nil,
			want{permanent: true, says: "401; check PAGERDUTY_API_TOKEN"}},
		{"read-only key", newPagerDuty(t, answers.PagerDutyOptions{BaseURL: srv.URL, Token: "readonlykey", From: pdFrom}), incident, nil,
			want{permanent: true, says: "Access Denied"}},
		{"From not a user", newPagerDuty(t, answers.PagerDutyOptions{BaseURL: srv.URL, Token: pdToken, From: "ghost@acme.example"}), incident, nil,
			want{permanent: true, says: "Requester User Not Found"}},
		{"no such incident", ok, answers.Destination{Type: answers.TypePagerDutyNote, IncidentID: "PNOPE"}, nil,
			want{permanent: true, says: "404"}},
		{"rate limited", ok, incident, ptr(peerstest.PagerDutyRateLimited(37 * time.Second)),
			want{delay: 37 * time.Second, says: "Rate Limit Exceeded"}},
		{"429 with Retry-After", ok, incident, &peerstest.Fault{Status: 429, Header: map[string][]string{"Retry-After": {"5"}}},
			want{delay: 5 * time.Second, says: "429"}},
		{"5xx", ok, incident, ptr(peerstest.PagerDutyError(503, "Service Unavailable", 0)), want{says: "503"}},
		{"hang up", ok, incident, &peerstest.Fault{Close: true}, want{says: "EOF"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				f := *tc.fault
				f.Times = 1
				fake.Fail(peerstest.RoutePagerDutyCreateNote, f)
			}
			_, err := tc.pd.Post(ctx, tc.d, answer("run-err", "x"))
			if err == nil {
				t.Fatal("posted")
			}
			delay, hasDelay := answers.RetryDelay(err)
			if answers.IsPermanent(err) != tc.want.permanent || delay != tc.want.delay || hasDelay != (tc.want.delay != 0) {
				t.Fatalf("permanent=%v delay=%v; want %+v (%v)", answers.IsPermanent(err), delay, tc.want, err)
			}
			if !strings.Contains(err.Error(), tc.want.says) || strings.Contains(err.Error(), pdToken) {
				t.Fatalf("error %q; want it to say %q, without the key", err, tc.want.says)
			}
		})
	}
	if n := len(fake.Notes("PT4KHLK")); n != 0 {
		t.Fatalf("%d notes after failures only", n)
	}
}

func TestPagerDuty_LongAnswerIsCutToTheNoteLimit(t *testing.T) {
	fake, srv := pagerDutyFake(t)
	pd := newPagerDuty(t, answers.PagerDutyOptions{BaseURL: srv.URL, Token: pdToken, From: pdFrom})
	a := answer("run-long", strings.Repeat("日本", 20000))
	if _, err := pd.Post(context.Background(), incident, a); err != nil {
		t.Fatal(err)
	}
	content := fake.Notes("PT4KHLK")[0].Content
	if n := utf8.RuneCountInString(content); n > answers.PagerDutyMaxNote || n < answers.PagerDutyMaxNote-200 {
		t.Fatalf("note is %d characters, want just under %d", n, answers.PagerDutyMaxNote)
	}
	if !strings.HasSuffix(content, "[This answer was cut to fit a PagerDuty note; the whole answer is on the run's page: "+a.RunURL+"]"+
		"\n\nOrchestrator Edge run: "+a.RunURL+"\norchestrator-edge:run=run-long") {
		t.Fatalf("the cut note ends %q", content[len(content)-300:])
	}
	// Still found: the marker survives the cut.
	if _, ok, err := pd.Find(context.Background(), incident, a); !ok || err != nil {
		t.Fatalf("Find after a cut = %v %v", ok, err)
	}
}

func TestPagerDuty_CheckSaysWhatIsMissing(t *testing.T) {
	for _, tc := range []struct {
		o    answers.PagerDutyOptions
		d    answers.Destination
		says string
	}{
		{answers.PagerDutyOptions{}, incident, "set PAGERDUTY_API_TOKEN and PAGERDUTY_FROM_EMAIL"},
		{answers.PagerDutyOptions{From: pdFrom}, incident, "set PAGERDUTY_API_TOKEN"},
		{answers.PagerDutyOptions{Token: pdToken}, incident, "set PAGERDUTY_FROM_EMAIL"},
		{answers.PagerDutyOptions{Token: pdToken, From: pdFrom}, answers.Destination{Type: answers.TypePagerDutyNote, IncidentID: "../users"}, "is not a PagerDuty incident id"},
		{answers.PagerDutyOptions{Token: pdToken, From: pdFrom}, answers.Destination{Type: answers.TypePagerDutyNote}, "is not a PagerDuty incident id"},
		{answers.PagerDutyOptions{Token: pdToken, From: pdFrom}, incident, ""},
	} {
		err := newPagerDuty(t, tc.o).Check(tc.d)
		if (tc.says == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.says)) {
			t.Errorf("Check(%+v) = %v; want %q", tc.d, err, tc.says)
		}
	}
	if _, err := answers.NewPagerDuty(answers.PagerDutyOptions{BaseURL: "api.pagerduty.com"}); err == nil {
		t.Fatal("a base URL without a scheme was taken")
	}
}
