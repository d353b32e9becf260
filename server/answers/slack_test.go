package answers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
)

const botToken = "xoxb-test-bot"

// slackFake serves the fake Slack Web API with the bot's token and two
// channels: C0ANSWERS (the bot is in it) and C0OUTSIDE (it is not).
func slackFake(t *testing.T) (*peerstest.Slack, *Slack) {
	t.Helper()
	fake := peerstest.NewSlack()
	fake.AddToken(botToken)
	fake.AddChannel("C0ANSWERS", true)
	fake.AddChannel("C0OUTSIDE", false)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return fake, NewSlack(SlackOptions{APIURL: srv.URL, Tokens: map[string]string{"": botToken},
		HTTPClient: &http.Client{Timeout: 5 * time.Second}})
}

type slackBlock struct {
	Type string `json:"type"`
	Text *struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"text"`
	Elements []struct {
		ActionID string          `json:"action_id"`
		Value    string          `json:"value"`
		Text     json.RawMessage `json:"text"`
		Type     string          `json:"type"`
	} `json:"elements"`
}

func blocksOf(t *testing.T, m peerstest.SlackMessage) []slackBlock {
	t.Helper()
	var b []slackBlock
	if err := json.Unmarshal(m.Blocks, &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// An answer is posted in the thread it was asked in: Block Kit sections
// with the text escaped (the agent cannot notify a whole channel), the
// feedback buttons carrying the run's reference, a link to the run, and
// the run marker in the message metadata.
func TestSlack_PostsTheAnswerInTheThread(t *testing.T) {
	fake, s := slackFake(t)
	a := Answer{RunID: "3f1e2d3c-0000-4000-8000-000000000001", Text: "Checkout pods are OOM-killed <!channel> & restarting.\nRaise the limit.",
		Success: true, RunURL: "https://orchestrator.example/ui/agent-runs/3f1e2d3c-0000-4000-8000-000000000001", FeedbackRef: "ref-abc"}
	d := Destination{Type: TypeSlack, ChannelID: "C0ANSWERS", ThreadTS: "1733312345.000100"}
	p, err := s.Post(context.Background(), d, a)
	if err != nil {
		t.Fatal(err)
	}
	msgs := fake.Messages("C0ANSWERS")
	if len(msgs) != 1 || msgs[0].TS != p.MessageID || msgs[0].ThreadTS != "1733312345.000100" || msgs[0].Token != botToken {
		t.Fatalf("messages = %+v, posted %+v", msgs, p)
	}
	if !strings.HasSuffix(p.Link, "/archives/C0ANSWERS/p"+strings.ReplaceAll(p.MessageID, ".", "")) {
		t.Fatalf("link = %q", p.Link)
	}
	b := blocksOf(t, msgs[0])
	if len(b) != 3 || b[0].Type != "section" || b[1].Type != "actions" || b[2].Type != "context" {
		t.Fatalf("blocks = %s", msgs[0].Blocks)
	}
	if want := "Checkout pods are OOM-killed &lt;!channel&gt; &amp; restarting.\nRaise the limit."; b[0].Text.Text != want {
		t.Fatalf("section = %q, want %q", b[0].Text.Text, want)
	}
	if len(b[1].Elements) != 2 || b[1].Elements[0].ActionID != "feedback_positive" || b[1].Elements[1].ActionID != "feedback_negative" ||
		b[1].Elements[0].Value != "ref-abc" || b[1].Elements[1].Value != "ref-abc" {
		t.Fatalf("feedback buttons = %+v", b[1].Elements)
	}
	if !strings.Contains(string(msgs[0].Blocks), a.RunURL) {
		t.Fatalf("no link to the run: %s", msgs[0].Blocks)
	}
	var meta struct {
		EventType    string         `json:"event_type"`
		EventPayload map[string]any `json:"event_payload"`
	}
	if err := json.Unmarshal(msgs[0].Metadata, &meta); err != nil || meta.EventType != SlackMarker || meta.EventPayload["run_id"] != a.RunID {
		t.Fatalf("metadata = %s", msgs[0].Metadata)
	}
	if strings.Contains(msgs[0].Text, "<!channel>") {
		t.Fatalf("the fallback text is not escaped: %q", msgs[0].Text)
	}

	// A failure message has no feedback buttons and no link without a
	// public URL.
	if _, err := s.Post(context.Background(), d, Answer{RunID: "r2", Text: "The agent could not answer this.", Success: false}); err != nil {
		t.Fatal(err)
	}
	b = blocksOf(t, fake.Messages("C0ANSWERS")[1])
	if len(b) != 1 || b[0].Type != "section" {
		t.Fatalf("failure blocks = %s", fake.Messages("C0ANSWERS")[1].Blocks)
	}
}

// A long answer is split into sections of at most 3,000 characters, cut
// at line breaks, within 50 blocks; one longer than that holds ends with a
// note. The fake, like Slack, refuses anything past those bounds.
func TestSlack_LongAnswersFitBlockKit(t *testing.T) {
	fake, s := slackFake(t)
	para := strings.Repeat("The pod <checkout-7f> restarted & ", 20) + "\n" // 681 characters, 881 escaped: 3 a section
	cases := []struct {
		name     string
		text     string
		sections int
		note     bool
	}{
		{"short", "fine", 1, false},
		{"a few sections", strings.Repeat(para, 10), 4, false},
		{"longer than a message holds", strings.Repeat(para, 300), 48, true},
		{"one unbroken word", strings.Repeat("é", 7000), 3, false},
	}
	for i, c := range cases {
		a := Answer{RunID: "r", Text: c.text, Success: true, RunURL: "https://o.example/ui/agent-runs/r", FeedbackRef: "r"}
		if _, err := s.Post(context.Background(), Destination{Type: TypeSlack, ChannelID: "C0ANSWERS"}, a); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		b := blocksOf(t, fake.Messages("C0ANSWERS")[i])
		var sections []string
		for _, x := range b {
			if x.Type == "section" {
				if n := utf8.RuneCountInString(x.Text.Text); n > 3000 {
					t.Fatalf("%s: a section of %d characters", c.name, n)
				}
				sections = append(sections, x.Text.Text)
			}
		}
		if len(b) > 50 || len(sections) != c.sections {
			t.Fatalf("%s: %d blocks, %d sections, want %d", c.name, len(b), len(sections), c.sections)
		}
		last := sections[len(sections)-1]
		if got := strings.Contains(last, "the whole answer is on the orchestrator's admin page"); got != c.note {
			t.Fatalf("%s: note %v in %q", c.name, got, last[max(0, len(last)-200):])
		}
		if !c.note && c.name != "short" {
			// Nothing lost: the sections are the whole (escaped) answer.
			joined := unescape(strings.Join(sections, ""))
			if strings.Join(strings.Fields(joined), "") != strings.Join(strings.Fields(c.text), "") {
				t.Fatalf("%s: the sections do not hold the whole answer", c.name)
			}
			for _, sec := range sections[:len(sections)-1] {
				if c.name == "a few sections" && !strings.HasSuffix(sec, "restarted &amp;") {
					t.Fatalf("%s: a section not cut at a line break: …%q", c.name, sec[len(sec)-40:])
				}
			}
		}
	}
}

// Slack's errors, read for the retry stage: what retrying cannot fix is
// permanent, a 429 says when to come back, 5xx and timeouts are retried.
func TestSlack_ErrorsAreReadForTheRetryStage(t *testing.T) {
	fake, s := slackFake(t)
	a := Answer{RunID: "r", Text: "x", Success: true}
	in := Destination{Type: TypeSlack, ChannelID: "C0ANSWERS"}
	post := func(d Destination) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := s.Post(ctx, d, a)
		return err
	}
	for _, c := range []struct {
		name    string
		dest    Destination
		setup   func()
		errText string
	}{
		{"channel_not_found", Destination{Type: TypeSlack, ChannelID: "C0NOWHERE"}, nil, "slack chat.postMessage: channel_not_found"},
		{"not_in_channel", Destination{Type: TypeSlack, ChannelID: "C0OUTSIDE"}, nil, "slack chat.postMessage: not_in_channel"},
		{"token_revoked", in, func() { fake.RevokeToken(botToken) }, "slack chat.postMessage: token_revoked"},
	} {
		if c.setup != nil {
			c.setup()
		}
		err := post(c.dest)
		if err == nil || !IsPermanent(err) || err.Error() != c.errText {
			t.Fatalf("%s: %v (permanent %v)", c.name, err, IsPermanent(err))
		}
	}
	fake.AddToken(botToken)
	unknown := NewSlack(SlackOptions{APIURL: s.o.APIURL, Tokens: map[string]string{"": "xoxb-someone-else"}})
	if _, err := unknown.Post(context.Background(), in, a); !IsPermanent(err) || !strings.Contains(err.Error(), "invalid_auth") {
		t.Fatalf("an unknown token: %v", err)
	}

	fake.RateLimit(1, 7)
	err := post(in)
	if d, ok := RetryDelay(err); !ok || d != 7*time.Second || IsPermanent(err) {
		t.Fatalf("429: %v, delay %v %v", err, d, ok)
	}
	fake.Fail(peerstest.RouteSlackPostMessage, peerstest.Fault{Status: http.StatusServiceUnavailable, Times: 1})
	if err := post(in); err == nil || IsPermanent(err) || err.Error() != "slack chat.postMessage: HTTP 503" {
		t.Fatalf("503: %v", err)
	}
	fake.Fail(peerstest.RouteSlackPostMessage, peerstest.Fault{Hang: true, Times: 1})
	if err := post(in); err == nil || IsPermanent(err) {
		t.Fatalf("a hung call: %v", err)
	}
	if err := post(in); err != nil {
		t.Fatalf("healed: %v", err)
	}

	// The fake refuses what Slack refuses: no token, a token in a query
	// string.
	for _, u := range []string{s.o.APIURL + "chat.getPermalink?channel=C0ANSWERS&message_ts=1", s.o.APIURL + "chat.getPermalink?token=" + botToken} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 200 || out.OK || out.Error != "not_authed" {
			t.Fatalf("%s: %d %+v", u, resp.StatusCode, out)
		}
	}
	resp, err := http.PostForm(s.o.APIURL+"chat.postMessage", url.Values{"channel": {"C0ANSWERS"}, "text": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// Find looks for the run's marker where the answer goes: found after a
// post, not for another run, not in a thread with nothing in it; in a
// channel, among its newest messages.
func TestSlack_FindLooksForTheRunsMarker(t *testing.T) {
	_, s := slackFake(t)
	ctx := context.Background()
	thread := Destination{Type: TypeSlack, ChannelID: "C0ANSWERS", ThreadTS: "1733312345.000100"}
	mine := Answer{RunID: "run-1", Text: "answer", Success: true}
	if _, ok, err := s.Find(ctx, thread, mine); ok || err != nil {
		t.Fatalf("found in an empty thread: %v %v", ok, err)
	}
	p, err := s.Post(ctx, thread, mine)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Post(ctx, thread, Answer{RunID: "run-2", Text: "another", Success: true}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Find(ctx, thread, mine)
	if err != nil || !ok || got.MessageID != p.MessageID || got.Link != p.Link {
		t.Fatalf("Find = %+v %v %v, want %+v", got, ok, err, p)
	}
	if _, ok, _ := s.Find(ctx, thread, Answer{RunID: "run-3"}); ok {
		t.Fatal("found another run's answer")
	}
	channel := Destination{Type: TypeSlack, ChannelID: "C0ANSWERS"}
	if _, ok, _ := s.Find(ctx, channel, Answer{RunID: "run-4"}); ok {
		t.Fatal("found before posting")
	}
	p4, _ := s.Post(ctx, channel, Answer{RunID: "run-4", Text: "top level", Success: true})
	if got, ok, err := s.Find(ctx, channel, Answer{RunID: "run-4"}); !ok || err != nil || got.MessageID != p4.MessageID {
		t.Fatalf("in the channel: %+v %v %v", got, ok, err)
	}
	if _, _, err := s.Find(ctx, Destination{Type: TypeSlack, ChannelID: "C0NOWHERE", ThreadTS: "1.1"}, mine); !IsPermanent(err) {
		t.Fatalf("Find in a missing channel: %v", err)
	}
}

// A destination whose Slack app has no bot token is refused before any
// call, saying which variable to set.
func TestSlack_CheckNamesTheMissingToken(t *testing.T) {
	s := NewSlack(SlackOptions{Tokens: map[string]string{"sre-bot": "xoxb-1"}, TokenEnv: map[string]string{"ops-bot": "OPSBOT_TOKEN"}})
	for d, want := range map[Destination]string{
		{Type: TypeSlack, ChannelID: "C1"}:                 "no Slack bot token for the default Slack app (SLACK_BOT_TOKEN is unset)",
		{Type: TypeSlack, ChannelID: "C1", App: "ops-bot"}: `no Slack bot token for Slack app "ops-bot" (OPSBOT_TOKEN is unset)`,
		{Type: TypeSlack, ChannelID: "C1", App: "unknown"}: `no Slack bot token for Slack app "unknown" (give it bot_token_env in the sources file's slack_apps)`,
		{Type: TypeSlack, ChannelID: "C1", App: "sre-bot"}: "",
	} {
		got := ""
		if err := s.Check(d); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("Check(%+v) = %q, want %q", d, got, want)
		}
	}
}
