package main

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers/peerstest"
)

// channelButton finds, on the fake Slack's channel page (as user), the
// form of the button labelled label on the newest message holding want.
var pageForm = regexp.MustCompile(`(?s)<form method="post" action="([^"]+)">.*?name="action_id" value="([^"]+)">.*?<button type="submit">([^<]*)</button></form>`)

func channelPage(t *testing.T, slackURL, user string) string {
	t.Helper()
	resp, err := http.Get(slackURL + "?as=" + user)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return html.UnescapeString(string(b))
}

// pageClick clicks, as user, the button labelled label of the message
// whose text holds want, as a person does on the channel page; it waits
// for that button to show.
func pageClick(t *testing.T, slackURL, user, want, label string) {
	t.Helper()
	var action, id string
	waitUntil(t, time.Minute, "a "+label+" button on "+want, func() bool {
		for _, article := range strings.Split(channelPage(t, slackURL, user), "<article") {
			if !strings.Contains(article, want) {
				continue
			}
			for _, f := range pageForm.FindAllStringSubmatch(article, -1) {
				if f[3] == label {
					action, id = f[1], f[2]
					return true
				}
			}
		}
		return false
	})
	base, _ := url.Parse(slackURL)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).PostForm(
		base.Scheme+"://"+base.Host+action, url.Values{"user": {user}, "action_id": {id}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"ok":true`) {
		t.Fatalf("click %s on %q as %s = %d %s", label, want, user, resp.StatusCode, b)
	}
}

// Dev mode with ORCHESTRATOR_AGENT_PROTOCOL=investigate: a Slack mention
// becomes dev mode's streamed investigation, and a newcomer follows the
// whole conversation on the fake Slack's channel page — the progress
// message, the agent's question with its options, the approval. Clicking
// there (the fake sends Slack's signed block_actions to the interactions
// door) answers the question and, as the seeded team's approver, approves
// the restart (a bystander's click is refused with a message only they
// see); the fake agent goes on with what it was told, and its answer,
// saying so, replaces the progress message. The steps run without pause
// (devAgentPace 0): the test waits for what the page shows, never a time.
func TestDevMode_TheWholeConversationOnTheFakeSlack(t *testing.T) {
	pace := devAgentPace
	devAgentPace = 0
	defer func() { devAgentPace = pace }()
	base, stdout, _ := serveDev(t, t.TempDir(), map[string]string{"ORCHESTRATOR_AGENT_PROTOCOL": "investigate"})
	m := regexp.MustCompile(`dev mode: fake Slack channel (\S+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no fake Slack channel printed:\n%s", stdout)
	}
	slackURL := m[1]
	if code := sendSignedSample(t, base, "slack", devSecret("slack")); code != 200 {
		t.Fatalf("the mention = %d", code)
	}
	pageClick(t, slackURL, peerstest.DevApprover, peerstest.DevQuestion, "prod-us")
	waitUntil(t, time.Minute, "the answered question", func() bool {
		return strings.Contains(channelPage(t, slackURL, peerstest.DevApprover), "Answered *prod-us* by <@"+peerstest.DevApprover+">")
	})
	// Not an approver: told so, only them.
	pageClick(t, slackURL, peerstest.DevBystander, "rollout restart", "Approve")
	waitUntil(t, time.Minute, "the bystander's refusal", func() bool {
		p := channelPage(t, slackURL, peerstest.DevBystander)
		return strings.Contains(p, "Only visible to you") && strings.Contains(p, "Only the team's approvers (team config approvals.approvers)")
	})
	if strings.Contains(channelPage(t, slackURL, peerstest.DevApprover), "Only visible to you") {
		t.Fatal("the bystander's refusal is shown to the approver")
	}
	pageClick(t, slackURL, peerstest.DevApprover, "rollout restart", "Approve")
	var page string
	waitUntil(t, time.Minute, "the answer", func() bool {
		page = channelPage(t, slackURL, peerstest.DevApprover)
		return strings.Contains(page, "deployment/checkout was restarted (approved by "+peerstest.DevApprover+")")
	})
	for _, want := range []string{"Approved by <@" + peerstest.DevApprover + ">.", "pods of checkout in prod-us", "Helpful"} {
		if !strings.Contains(page, want) {
			t.Errorf("the channel page lacks %q:\n%s", want, page)
		}
	}
	for _, gone := range []string{"Investigating…", ">Stop<", ">prod-eu<", ">Approve<"} {
		if strings.Contains(page, gone) {
			t.Errorf("the channel page still shows %q:\n%s", gone, page)
		}
	}
}
