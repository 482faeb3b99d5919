package cutoffbench

// TestMem measures heap bytes and allocations per live context, with n contexts alive at
// once (default 1,000,000; CUTOFF_GO_MEM_N overrides). It only runs when CUTOFF_GO_MEM is set
// (benches/go.sh sets it) and prints one line per kind on stdout:
//
//	MEM <name> n=<count> bytes_per=<float> allocs_per=<float> create_ns_per=<float>
//
// bytes_per = (HeapAlloc after creating n and runtime.GC()) - (HeapAlloc before, after
// runtime.GC()), divided by n: the live bytes each context keeps, including its share of the
// parent's children map and of the runtime timer heap. allocs_per = Mallocs delta / n (every
// allocation made while creating them, live or not). create_ns_per = creation wall time / n.
// The slices holding the contexts and cancel funcs are allocated before the first reading.
//
// Each kind is a subtest, TestMem/<name>; go.sh runs each in a process of its own, since the
// runtime's timer heap keeps its capacity after a measurement (a second WithTimeout kind in
// the same process would not pay for its heap slots). Names (the parent is
// context.WithCancel(context.Background()), shared by all n):
//
//	WithTimeoutFromCancelable1h   WithTimeout(parent, 1h): a pending deadline
//	WithCancelFromCancelable      WithCancel(parent): a live child
//	WithTimeoutFromBackground1h   WithTimeout(Background, 1h): no parent registration (extra)

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

func TestMem(t *testing.T) {
	if os.Getenv("CUTOFF_GO_MEM") == "" {
		t.Skip("set CUTOFF_GO_MEM=1 to run (benches/go.sh does)")
	}
	n := 1_000_000
	if s := os.Getenv("CUTOFF_GO_MEM_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			t.Fatalf("CUTOFF_GO_MEM_N=%q: want a positive integer", s)
		}
		n = v
	}
	kinds := []struct {
		name       string
		cancelable bool
		mk         func(context.Context) (context.Context, context.CancelFunc)
	}{
		{"WithTimeoutFromCancelable1h", true, withTimeout1h},
		{"WithCancelFromCancelable", true, context.WithCancel},
		{"WithTimeoutFromBackground1h", false, withTimeout1h},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) { measureMem(t, k.name, n, k.cancelable, k.mk) })
	}
}

func withTimeout1h(p context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(p, time.Hour)
}

func measureMem(t *testing.T, name string, n int, cancelable bool, mk func(context.Context) (context.Context, context.CancelFunc)) {
	parent := context.Background()
	pcancel := context.CancelFunc(func() {})
	if cancelable {
		parent, pcancel = context.WithCancel(parent)
		// The parent's Done channel is made lazily by the first child; make it now so it
		// is not charged to the children.
		_ = parent.Done()
	}
	ctxs := make([]context.Context, n)
	cancels := make([]context.CancelFunc, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	for i := range n {
		ctxs[i], cancels[i] = mk(parent)
	}
	created := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	for i := range n {
		if ctxs[i].Err() != nil {
			t.Fatalf("%s: context %d is not live", name, i)
		}
	}
	bytes := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	allocs := float64(after.Mallocs-before.Mallocs) / float64(n)
	fmt.Printf("MEM %s n=%d bytes_per=%.1f allocs_per=%.2f create_ns_per=%.1f\n",
		name, n, bytes, allocs, float64(created.Nanoseconds())/float64(n))
	for _, c := range cancels {
		c()
	}
	pcancel()
	runtime.KeepAlive(ctxs)
	runtime.KeepAlive(cancels)
}
