package relay

import (
	"testing"
	"time"
)

// TestMemReturnAfterManyPeersGo: memory goes back to the OS at the sweep
// that leaves returnMemAfter peers removed and at the one after it (the
// peers' queues are freed by a finalizer, one collection later), not for a
// few peers, and not again within returnMemEvery.
func TestMemReturnAfterManyPeersGo(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	var m memReturn
	steps := []struct {
		removed int
		at      time.Duration
		want    bool
	}{
		{returnMemAfter - 1, 0, false},
		{1, 30 * time.Second, true},               // returnMemAfter in all
		{0, 60 * time.Second, true},               // once more, for the queues
		{returnMemAfter, 80 * time.Second, false}, // within returnMemEvery of the last
		{0, 30*time.Second + returnMemEvery, true},
		{0, 60*time.Second + returnMemEvery, true},
		{0, 90*time.Second + returnMemEvery, false},
	}
	for i, st := range steps {
		m.removed += st.removed
		if got := m.due(t0.Add(st.at)); got != st.want {
			t.Fatalf("step %d (%d more removed, at %s): due %v, want %v", i, st.removed, st.at, got, st.want)
		}
	}
}
