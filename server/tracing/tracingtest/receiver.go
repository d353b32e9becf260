// Package tracingtest is an OTLP receiver for tests and benchmarks: it
// takes the appliance's exports over HTTP (protobuf) or gRPC, the way a
// collector would, and keeps the spans to look at. It is a stand-in for the
// wire format only; the real backend test runs Jaeger.
package tracingtest

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened.
type Span struct {
	Service, Name              string
	TraceID, SpanID, ParentID  string
	Attrs                      map[string]string
	Links                      []string // linked trace ids
	LinkSpans                  []string // linked span ids
	StatusCode                 int32
	StartUnixNano, EndUnixNano uint64
}

// Receiver collects spans.
type Receiver struct {
	// URL is the base endpoint (http://host:port) to export to.
	URL     string
	mu      sync.Mutex
	spans   []Span
	headers []map[string][]string
	added   chan struct{}
	// Keep false discards the spans (benchmarks): only counted.
	keep  bool
	count int
}

// NewHTTP starts an OTLP/HTTP receiver closed with the test.
func NewHTTP(tb testing.TB) *Receiver {
	r := &Receiver{keep: true, added: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var msg coltracepb.ExportTraceServiceRequest
		if err != nil || req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &msg) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		r.add(&msg, req.Header)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	tb.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Discard makes the receiver count spans without keeping them.
func (r *Receiver) Discard() *Receiver { r.keep = false; return r }

// NewGRPC starts an OTLP/gRPC receiver closed with the test.
func NewGRPC(tb testing.TB) *Receiver {
	r := &Receiver{keep: true, added: make(chan struct{}, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, grpcService{r: r})
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(s.Stop)
	r.URL = "http://" + ln.Addr().String()
	return r
}

type grpcService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (g grpcService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	g.r.add(req, map[string][]string(md))
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *Receiver) add(msg *coltracepb.ExportTraceServiceRequest, headers map[string][]string) {
	var got []Span
	n := 0
	for _, rs := range msg.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = value(kv.Value)
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				n++
				if !r.keep {
					continue
				}
				s := Span{Service: service, Name: sp.Name, TraceID: hex.EncodeToString(sp.TraceId), SpanID: hex.EncodeToString(sp.SpanId),
					ParentID: hex.EncodeToString(sp.ParentSpanId), Attrs: map[string]string{}, StatusCode: int32(sp.GetStatus().GetCode()),
					StartUnixNano: sp.StartTimeUnixNano, EndUnixNano: sp.EndTimeUnixNano}
				for _, kv := range sp.Attributes {
					s.Attrs[kv.Key] = value(kv.Value)
				}
				for _, l := range sp.Links {
					s.Links = append(s.Links, hex.EncodeToString(l.TraceId))
					s.LinkSpans = append(s.LinkSpans, hex.EncodeToString(l.SpanId))
				}
				got = append(got, s)
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	r.count += n
	if r.keep {
		r.headers = append(r.headers, headers)
	}
	r.mu.Unlock()
	select {
	case r.added <- struct{}{}:
	default:
	}
}

func value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	default:
		return v.String()
	}
}

// Spans returns a copy of the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Count is how many spans were received.
func (r *Receiver) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Headers returns the request headers (gRPC: metadata) of every export.
func (r *Receiver) Headers() []map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string][]string(nil), r.headers...)
}

// Trace returns the spans of one trace.
func (r *Receiver) Trace(traceID string) []Span {
	var out []Span
	for _, s := range r.Spans() {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	return out
}
