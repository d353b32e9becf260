package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/config"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// sendSample signs a realistic sample event of a source with the configured
// secret (or, with --dev, the dev secret) and posts it to the orchestrator.
func sendSample(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	fs := newFlagSet("send-sample", "send-sample SOURCE [--url URL] [--dev] [--secret SECRET]\n\n"+
		"SOURCE is a built-in source: "+strings.Join(config.Sources[:], ", ")+".\n"+
		"(A configured source of the sources file is sent by its vendor; docs/sources.md shows how to sign one by hand.)", stdout)
	// The default is where a server started with the same environment
	// listens (ORCHESTRATOR_LISTEN_ADDR, else :8070).
	listen := getenv("ORCHESTRATOR_LISTEN_ADDR")
	if listen == "" {
		listen = ":8070"
	}
	url := fs.String("url", pageURL(listen), "the orchestrator's base URL: where a server started with this environment listens (ORCHESTRATOR_LISTEN_ADDR)")
	dev := fs.Bool("dev", false, "sign with the dev-mode secret when the source's secret is not set")
	secretFlag := fs.String("secret", "", "sign with `SECRET` instead of the source's configured secret (SLACK_SIGNING_SECRET, …)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// SOURCE may come before the flags.
		source := fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
		return postSample(ctx, source, *url, *secretFlag, *dev, getenv, stdout)
	}
	return &usageError{msg: "send-sample: name a built-in source: " + strings.Join(config.Sources[:], ", ")}
}

func postSample(ctx context.Context, source, baseURL, secret string, dev bool, getenv func(string) string, stdout io.Writer) error {
	path := webhook.BuiltinPath(source)
	if path == "" {
		return &usageError{msg: fmt.Sprintf("send-sample: %q is not a built-in source (want one of %s; a configured source is sent by its vendor)",
			source, strings.Join(config.Sources[:], ", "))}
	}
	if secret == "" {
		cfg, err := config.Load(overlay(getenv, map[string]string{"ORCHESTRATOR_DEV": "1"}))
		if err != nil {
			return err
		}
		if list := cfg.WebhookSecrets[source]; len(list) > 0 {
			secret = list[0].Reveal()
		} else if dev {
			secret = devSecret(source)
		} else {
			return fmt.Errorf("send-sample: no %s secret configured (set it, pass --secret, or --dev for the dev-mode secret)", source)
		}
	}
	id := strings.ReplaceAll(uuid.NewString(), "-", "")[:20]
	now := wallclock.Now()
	body := webhook.Sample(source, id, now)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+path, strings.NewReader(string(body)))
	if err != nil {
		return fmt.Errorf("send-sample: %w", err)
	}
	for k, v := range webhook.Sign(source, secret, body, now, "sample-"+id) {
		req.Header[k] = v
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("send-sample: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "%s %s → %d %s\n", source, path, resp.StatusCode, strings.TrimSpace(string(answer)))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("send-sample: the orchestrator answered %d", resp.StatusCode)
	}
	return nil
}
