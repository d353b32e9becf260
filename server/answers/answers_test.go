package answers

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// The shared stage reads what a notifier said of a failure, through any
// wrapping: retry or not, and when.
func TestFailureClassificationSurvivesWrapping(t *testing.T) {
	base := errors.New("invalid_auth")
	perm := fmt.Errorf("slack: %w", Permanent(base))
	if !IsPermanent(perm) || !errors.Is(perm, base) {
		t.Fatalf("a wrapped permanent failure is not seen as one: %v", perm)
	}
	if _, ok := RetryDelay(perm); ok {
		t.Fatal("a permanent failure has a retry delay")
	}
	later := fmt.Errorf("pagerduty: %w", RetryAfter(errors.New("429"), 7*time.Second))
	if d, ok := RetryDelay(later); !ok || d != 7*time.Second || IsPermanent(later) {
		t.Fatalf("RetryDelay = %v %v", d, ok)
	}
	if IsPermanent(errors.New("timeout")) || Permanent(nil) != nil || RetryAfter(nil, time.Second) != nil {
		t.Fatal("plain errors and nil are misread")
	}
}
