package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
	"github.com/incidentfox/orchestrator-edge/server/webhook"
	"github.com/prometheus/client_golang/prometheus"
)

// MaxFileBytes bounds the sources file a reload reads (the same bound as at
// start).
const MaxFileBytes = webhook.MaxSourcesFileBytes

// Options configure a Holder.
type Options struct {
	// Path is the sources file; "" = none (an empty policy, never reloaded).
	Path string
	// Getenv reads the variables the file names (default os.Getenv).
	Getenv func(string) string
	// Every is how often the file is read again (default 10 s). Polling,
	// not file-system events: a ConfigMap volume replaces its files by
	// swapping a symlink, which watchers miss or see twice.
	Every    time.Duration
	Logger   *slog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
	// Applied, when set, is called with each policy put in force (at
	// Load and at every successful reload), e.g. to warm caches.
	Applied func(*Policy)
	// Identifiers are routing identifier types rules may name beyond the
	// built-in sources' and the file's (an Alertmanager label mapping's).
	Identifiers []string
}

// Holder keeps the policy in force and reloads it from its file.
type Holder struct {
	o       Options
	log     *slog.Logger
	cur     atomic.Pointer[Policy]
	reloads *prometheus.CounterVec
	ok      prometheus.Gauge

	mu     sync.Mutex
	status Status
	seen   string // the hash of the file last read, good or bad
	fixed  string // the sources and Slack apps read at start

	stop chan struct{}
	done chan struct{}
}

// New reads the file (an error stops start-up: the operator is there to
// see it) and returns its Holder. Start begins watching it.
func New(o Options) (*Holder, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Every <= 0 {
		o.Every = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = wallclock.Now
	}
	h := &Holder{o: o, log: o.Logger.With("component", "policy"),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_sources_file_reloads_total",
			Help: "Reloads of the sources file's routing rules, time intervals, inhibit rules and destinations, by outcome (ok, error).",
		}, []string{"outcome"}),
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orchestrator_sources_file_ok",
			Help: "1 when the sources file on disk is the one in force; 0 while a broken file is refused and the previous one stays.",
		}),
	}
	h.reloads.WithLabelValues("ok")
	h.reloads.WithLabelValues("error")
	if o.Registry != nil {
		for _, c := range []prometheus.Collector{h.reloads, h.ok} {
			if err := o.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("policy: register metrics: %w", err)
			}
		}
	}
	p := &Policy{}
	if o.Path != "" {
		data, err := readFile(o.Path)
		if err != nil {
			return nil, err
		}
		if p, err = Parse(data, o.Getenv, o.Identifiers...); err != nil {
			return nil, fmt.Errorf("sources file %s: %v", o.Path, err)
		}
		h.seen = p.Hash
	}
	h.fixed = p.Fixed
	h.put(p)
	h.ok.Set(1)
	return h, nil
}

// Current is the policy in force (never nil).
func (h *Holder) Current() *Policy { return h.cur.Load() }

// Status says which file is in force and why a newer one was refused.
func (h *Holder) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

func (h *Holder) put(p *Policy) {
	h.cur.Store(p)
	h.mu.Lock()
	h.status = Status{Path: h.o.Path, LoadedAt: h.o.Now().UTC(), Hash: p.Hash, RestartNeeded: p.Fixed != h.fixed}
	h.mu.Unlock()
	if h.o.Applied != nil {
		h.o.Applied(p)
	}
}

// Reload reads the file again now; a file that did not change is not parsed
// again. It returns the error that kept the previous policy in force.
func (h *Holder) Reload() error {
	if h.o.Path == "" {
		return nil
	}
	data, err := readFile(h.o.Path)
	if err == nil {
		sum := sha256.Sum256(data)
		hash := hex.EncodeToString(sum[:])
		h.mu.Lock()
		same := hash == h.seen
		h.seen = hash
		h.mu.Unlock()
		if same {
			return nil
		}
		var p *Policy
		if p, err = Parse(data, h.o.Getenv, h.o.Identifiers...); err == nil {
			h.put(p)
			h.reloads.WithLabelValues("ok").Inc()
			h.ok.Set(1)
			h.log.Info("sources file reloaded", "path", h.o.Path, "hash", p.Hash[:12])
			if p.Fixed != h.fixed {
				h.log.Warn("the sources file's sources or slack_apps changed: they take effect at the next start", "path", h.o.Path)
			}
			return nil
		}
	}
	h.refused(err)
	return err
}

// refused records a file that could not be taken.
func (h *Holder) refused(err error) {
	now := h.o.Now().UTC()
	h.mu.Lock()
	h.status.Error, h.status.ErrorAt = err.Error(), &now
	h.mu.Unlock()
	h.reloads.WithLabelValues("error").Inc()
	h.ok.Set(0)
	h.log.Error("sources file not reloaded: the previous routing rules, intervals and destinations stay in force",
		"path", h.o.Path, "error", err.Error())
}

// Start reads the file again every Every until Stop.
func (h *Holder) Start(ctx context.Context) {
	if h.o.Path == "" || h.stop != nil {
		return
	}
	h.stop, h.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.done)
		t := time.NewTicker(h.o.Every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-h.stop:
				return
			case <-t.C:
				_ = h.Reload()
			}
		}
	}()
}

// Stop ends the watch.
func (h *Holder) Stop() {
	if h.stop == nil {
		return
	}
	close(h.stop)
	<-h.done
}

// readFile reads the file, refusing one past MaxFileBytes.
func readFile(path string) ([]byte, error) {
	data, err := webhook.ReadSourcesFile(path)
	if err != nil {
		return nil, fmt.Errorf("sources file %s: %w", path, err)
	}
	return data, nil
}
