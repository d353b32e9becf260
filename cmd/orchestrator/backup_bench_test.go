package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
)

// BenchmarkSnapshot measures an online backup of the real binary with
// 100 000 and 1 000 000 stored events: the snapshot's time and size, and the
// ack latency of webhooks offered at 1 000/s while it runs. Run with
// `make bench`; the figures are printed, not asserted.
func BenchmarkSnapshot(b *testing.B) {
	const admin, secret = "snap-admin", "snap-slack"
	for _, n := range []int{100_000, 1_000_000} {
		dir := b.TempDir()
		if err := run(context.Background(), []string{"migrate", "up", "--data-dir", dir}, envOf(nil), io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
		seed(b, filepath.Join(dir, "orchestrator.db"), n)
		f := startPeerFakes(b, admin)
		proc, logs, _ := child(b, append(f.env, "SLACK_SIGNING_SECRET="+secret, "ORCHESTRATOR_DATA_DIR="+dir), "serve")
		base := "http://" + waitLine(b, logs, "listening")["addr"].(string)
		go drain(logs)
		waitReady(b, base)

		// Open-loop load until the snapshot is done.
		stop := make(chan struct{})
		var mu sync.Mutex
		var acks []time.Duration
		var wg sync.WaitGroup
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					body := webhook.Sample(webhook.Slack, fmt.Sprintf("snap%d_%d", n, i), wallclock.Now())
					req, _ := http.NewRequest("POST", base+"/webhooks/slack/events", bytes.NewReader(body))
					req.Header = webhook.Sign(webhook.Slack, secret, body, wallclock.Now(), "")
					t := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						acks = append(acks, time.Since(t))
						mu.Unlock()
					}
				}(i)
			}
		}()
		time.Sleep(200 * time.Millisecond)
		req, _ := http.NewRequest("POST", base+"/api/v1/admin/backups", nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		took := time.Since(t0)
		close(stop)
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		var info struct {
			Size   int64 `json:"size"`
			Events int64 `json:"events"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			b.Fatalf("backup = %d", resp.StatusCode)
		}
		fmt.Printf("snapshot at %d stored events: %v (VACUUM INTO + integrity check + SHA-256), %.0f MB, %d events in it; %d webhooks acked during it, ack p50 %v p99 %v max %v\n",
			n, took.Round(10*time.Millisecond), float64(info.Size)/1e6, info.Events, len(acks),
			pctl(acks, .5).Round(time.Microsecond), pctl(acks, .99).Round(time.Microsecond), pctl(acks, 1).Round(time.Microsecond))
		_ = proc.Process.Signal(syscall.SIGTERM)
		_ = proc.Wait()
	}
}
