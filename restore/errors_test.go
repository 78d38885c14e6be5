package restore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestUnfinished: a restore stopped part way names the target's state and
// the way out, keeps its cause for exit codes, and tells an interruption
// from a failure.
func TestUnfinished(t *testing.T) {
	cause := fmt.Errorf("load: %w", ErrGap)
	err := Unfinished(cause, "the target holds collections a.b partly loaded", "run it again with --force")
	if !errors.Is(err, ErrGap) {
		t.Errorf("%v: the cause is lost", err)
	}
	for _, want := range []string{"load: ", "failed part way: the target holds collections a.b partly loaded; run it again with --force"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	err = Unfinished(fmt.Errorf("replay: %w", context.Canceled), "x", "y")
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "was interrupted part way: x; y") {
		t.Errorf("interrupted: %q", err)
	}
	if Unfinished(nil, "x", "y") != nil {
		t.Error("no error became one")
	}
}
